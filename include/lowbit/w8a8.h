// W8A8 linear layers (the SmoothQuant path): int8 weights with one scale per output row,
// times activations quantized to int8 on the fly, either per token (dynamic: each token's
// max |x| / 127) or with one scale calibrated per layer (static). The engine multiplies
// them in int32 (kernels::gemm_i8) and scales the sums: y[t, r] = s_x[t] · s_w[r] · Σ q_w q_x.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace lowbit {

struct Int8Weight {
  uint64_t rows = 0, cols = 0;
  std::vector<int8_t> q;     // [rows, cols], in [-127, 127] (-128 from compressed-tensors)
  std::vector<float> scale;  // [rows]: w[r, i] ≈ scale[r] · q[r, i]
  float input_scale = 0;     // static activation scale; 0: per token
};

// How a W8A8 checkpoint quantizes activations (written into its metadata).
struct W8A8Activations {
  bool static_scales = false;
  std::map<std::string, float> input_scales;  // GGUF weight name -> static scale (static only)
};

}  // namespace lowbit
