// One shape for progress and cancellation across every long operation (calibration
// windows, sensitivity steps, transformer blocks, tensors, perplexity chunks).
//
// The observer is called after each step. Returning false cancels: the operation stops at
// that step by throwing Error(ErrorKind::Cancelled), and a file it was writing is removed
// (outputs are written to a temporary name and renamed only when complete).
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace lowbit {

// Train: learned rounding's optimiser steps over all blocks (item: the block and its loss;
// seconds: time since the first step).
enum class Stage { Calibrate, Sensitivity, Block, Tensor, Perplexity, Train };
const char* stage_name(
    Stage s);  // "calibrate", "sensitivity", "block", "tensor", "perplexity", "train"

struct Progress {
  Stage stage;
  size_t done = 0, total = 0;  // steps of this stage
  std::string item{};          // what the step was: a tensor name, "" when nothing to say
  double seconds = 0;          // time the step took (blocks), else 0
};

using Observer = std::function<bool(const Progress&)>;

// Calls `observer` (when set) and throws Error(Cancelled) when it asks to stop.
void report_progress(const Observer& observer, const Progress& p);

}  // namespace lowbit
