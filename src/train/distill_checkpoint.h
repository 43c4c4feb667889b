// The checkpoint of a distillation or QAT run (lowbit/distill.h), so that a run stopped
// after step s continues from step s + 1 and ends with the weights of an uninterrupted run.
//
// One file, replaced atomically:
//   u64 magic "LBDIST01", u64 fingerprint, u32 steps done, u64 n, f64 losses[n],
//   u64 tensors, then per tensor: u64 count, f32 weights[count], f32 Adam m[count],
//   f32 Adam v[count], i32 Adam step count.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "train/optimizer.h"

namespace lowbit::train {

struct DistillCheckpoint {
  std::string path;
  uint64_t fingerprint = 0;

  void save(uint32_t steps_done, const std::vector<double>& losses,
            const std::vector<std::vector<float>*>& params, std::vector<Adam>& adam) const;
  // Fills params, adam and losses from the file and returns the steps done; 0 when there is
  // no file. Fails naming the file when it belongs to another run or is damaged.
  uint32_t load(std::vector<double>& losses, const std::vector<std::vector<float>*>& params,
                std::vector<Adam>& adam) const;
};

}  // namespace lowbit::train
