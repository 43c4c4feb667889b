// Checkpoints of the sequential driver (lowbit/sequential.h), so that a run killed after
// block l continues from block l + 1 with the same bytes as an uninterrupted run. A
// tensor-by-tensor run (GgufQuantizeWriter) keeps each finished tensor as step = its index
// and a state without activations.
//
// Directory layout (every file written atomically):
//   state.bin     u64 magic "LBCKPT01", u64 fingerprint, u32 next_layer, u64 W, T, D,
//                 u8 has_reference, then the quantized path's activations xq [W][T*D] f32
//                 and, with a reference, xf [W][T*D] f32: the inputs of block next_layer.
//   done-K.bin    the tensors finished in step K (0: the embedding, l + 1: block l), each
//                 u32 name length, name, f64 rel_rms_error, rel_output_error,
//                 rel_output_error_rtn, u64 byte count, bytes.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "lowbit/quantize.h"

namespace lowbit {

using Activations = std::vector<std::vector<float>>;  // [windows][T * D]

// Creates `dir` (and its parents) for a checkpoint; fails naming it when it cannot.
void make_checkpoint_directory(const std::string& dir);

// FNV-1a over what decides a run's bytes: a checkpoint records it, and a run with another
// value refuses the checkpoint.
struct JobHash {
  uint64_t value = 1469598103934665603ull;
  void add(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) value = (value ^ b[i]) * 1099511628211ull;
  }
  void add(const std::string& s) { add(s.data(), s.size()); }
};

class SequentialCheckpoint {
 public:
  SequentialCheckpoint(std::string dir, uint64_t fingerprint)
      : dir_(std::move(dir)), fp_(fingerprint) {}

  // The tensors finished in `step`, in name order.
  void save_step(
      uint32_t step,
      const std::vector<std::pair<std::string, const PrecomputedTensor*>>& tensors) const;
  // The inputs of block next_layer; written after that block's tensors (save_step).
  void save_state(uint32_t next_layer, const Activations& xq, const Activations& xf) const;
  // The same, window by window: `window(reference, i)` gives window i's TD floats (it may
  // fetch them from another rank), the quantized path's W windows first.
  using WindowSource = std::function<const float*(bool reference, size_t i)>;
  void save_state(uint32_t next_layer, size_t W, size_t TD, bool has_reference,
                  const WindowSource& window) const;

  // Loads the state into xq / xf (sized already) and returns next_layer; 0 when there is no
  // checkpoint. Fails naming the directory when it belongs to another job or is damaged.
  uint32_t load_state(Activations& xq, Activations& xf) const;
  // The stored next_layer (0: no checkpoint), after the same checks as load_state, and the
  // windows handed one by one to `take(reference, i, data)` in the order save_state wrote
  // (`data`: TD floats, not aligned).
  uint32_t stored_layer(size_t W, size_t TD, bool has_reference) const;
  using WindowSink = std::function<void(bool reference, size_t i, const void* data)>;
  void load_windows(size_t W, size_t TD, bool has_reference, const WindowSink& take) const;
  std::vector<std::pair<std::string, PrecomputedTensor>> load_step(uint32_t step) const;
  bool has_step(uint32_t step) const;

  void remove() const;

 private:
  std::string dir_;
  uint64_t fp_;
};

}  // namespace lowbit
