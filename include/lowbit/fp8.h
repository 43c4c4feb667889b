// FP8 E4M3 weights (compressed-tensors float-quantized, as llm-compressor's FP8 schemes
// write them): each decoder-layer linear weight w [rows, cols] is stored as
//   W.weight F8_E4M3 [rows, cols] = e4m3(w / s),  W.weight_scale F32 [rows, 1] or [1],
// with s = max |w| / 448 per output row or per tensor; w ≈ s * e4m3 value. Activations stay
// unquantized (weight-only FP8). Embeddings and head stay F16, norms F32.
#pragma once

#include <string>

#include "lowbit/affine.h"

namespace lowbit {

// Writes the Hugging Face directory (it appears only when complete). The source must be a
// Hugging Face directory. Uses o.n_threads, o.on_tensor and o.method.
QuantizeReport write_fp8_model(const Model& m, const std::string& out_dir, bool per_tensor,
                               const AffineWriteOptions& o);

}  // namespace lowbit
