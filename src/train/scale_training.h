// Quantization-aware training of the quantization scales (LSQ, Esser et al. 2020; the
// end-to-end phase of EfficientQAT): each quantized block linear keeps its integer codes and
// sub-block scales, and learns the f16 scale fields of every block (d, and dmin or m:
// quant::f16_scale_offsets). A field is f0·(1 + θ) with θ trained from 0, so each moves by
// its own relative step; the forward pass decodes the block with the field rounded to f16,
// exactly as the file will hold it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "lowbit/dtype.h"
#include "lowbit/model.h"
#include "lowbit/model_grad.h"

namespace lowbit::train {

// One tensor's trained fields.
class TrainedScales {
 public:
  // `bytes`: n_values of type t (a block type with f16 scale fields; else Argument).
  TrainedScales(std::string name, DType t, std::vector<uint8_t> bytes, size_t n_values);
  std::vector<float>& theta() { return theta_; }  // [blocks · fields]
  DType type() const { return type_; }
  // The values the fields decode to now [n_values].
  void decode(std::vector<float>& w) const;
  // ∂L/∂θ from ∂L/∂w [n_values]: f0 · Σ over the block of ∂L/∂w · (the value per unit field).
  void backward(const std::vector<float>& dw, std::vector<float>& dtheta) const;
  // The tensor's bytes with the fields as trained.
  std::vector<uint8_t> bytes() const;

 private:
  std::string name_;
  DType type_;
  std::vector<size_t> offsets_;
  size_t block_bytes_ = 0, block_values_ = 0, n_blocks_ = 0;
  std::vector<uint8_t> bytes_;
  std::vector<float> f0_, theta_;         // [blocks · fields]
  std::vector<std::vector<float>> unit_;  // per field: the values with that field 1, others 0
};

// The scales of every linear named in `types`, from the student's tensor when it is stored in
// that type already (a start file), else rounded to nearest from its weights.
std::map<std::string, TrainedScales> trained_scales(const Model& student,
                                                    const std::map<std::string, DType>& types,
                                                    const ModelWeights<float>& w, int n_threads);

// m with each tensor of `scales` stored in its type with the fields as trained.
Model with_trained_scales(const Model& m, const std::map<std::string, TrainedScales>& scales);

// The linear named "blk.L.NAME.weight" in w (nullptr for another name).
std::vector<float>* linear_of(ModelWeights<float>& w, const std::string& name);

}  // namespace lowbit::train
