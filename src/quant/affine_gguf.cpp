// Integer checkpoints to GGUF, keeping the grid where a block type holds it (affine_gguf.h).
#include "quant/affine_gguf.h"

#include <cmath>
#include <cstring>

#include "lowbit/error.h"
#include "lowbit/float_convert.h"
#include "lowbit/quantize.h"
#include "quant/block_codecs.h"
#include "quant/block_layouts.h"
#include "quant/error_sums.h"

namespace lowbit::quant {
namespace {

bool groups_cover_blocks(const AffineWeight& w) {
  if (w.cols % kQK != 0) return false;
  return w.spec.group <= 0 || w.spec.group % kQK == 0;
}

// Index into scales/zeros of the group holding (row r, input c).
uint64_t param_index(const AffineWeight& w, uint64_t r, uint64_t c) {
  if (w.spec.group < 0) return 0;
  return r * w.spec.groups_per_row(w.cols) + c / static_cast<uint64_t>(w.spec.group_len(w.cols));
}

bool all_zeros_are(const AffineWeight& w, int z) {
  for (uint8_t v : w.t.zeros)
    if (v != z) return false;
  return true;
}

}  // namespace

std::optional<DType> gguf_type_holding(const AffineWeight& w) {
  if (!groups_cover_blocks(w)) return std::nullopt;
  const int bits = w.spec.bits;
  const bool symmetric = all_zeros_are(w, 1 << (bits - 1));
  if (bits == 4) return symmetric ? DType::Q4_0 : DType::Q4_1;
  if (bits == 5) return symmetric ? DType::Q5_0 : DType::Q5_1;
  if (bits == 8 && symmetric) return DType::Q8_0;
  return std::nullopt;
}

std::vector<uint8_t> encode_affine_blocks(const AffineWeight& w, DType type) {
  if (gguf_type_holding(w) != type)
    fail(ErrorKind::Argument, "{} does not hold the grid of {}", dtype_name(type),
         w.spec.describe());
  const auto& tr = traits(type);
  const BlockCodec* codec = block_codec(type);
  const uint64_t blocks_per_row = w.cols / kQK, row_bytes = packed_row_bytes(w.cols, w.spec.bits);
  std::vector<uint8_t> out(w.rows * blocks_per_row * tr.type_size);
  std::vector<uint8_t> row(w.cols);
  int codes[kQK];
  for (uint64_t r = 0; r < w.rows; ++r) {
    unpack_bits(&w.t.codes[r * row_bytes], w.cols, w.spec.bits, row.data());
    for (uint64_t b = 0; b < blocks_per_row; ++b) {
      uint8_t* block = &out[(r * blocks_per_row + b) * tr.type_size];
      const uint64_t k = param_index(w, r, b * kQK);
      const float s = w.t.scales[k];
      const uint16_t d = f32_to_f16(s);
      std::memcpy(block, &d, 2);  // d is every layout's first field
      if (type == DType::Q4_1 || type == DType::Q5_1) {
        const uint16_t m = f32_to_f16(-s * w.t.zeros[k]);
        std::memcpy(block + 2, &m, 2);
      }
      if (type == DType::Q8_0) {  // d * qs with qs = q - 128
        auto* q8 = reinterpret_cast<BlockQ8_0*>(block);
        for (int e = 0; e < kQK; ++e) q8->qs[e] = static_cast<int8_t>(int{row[b * kQK + e]} - 128);
        continue;
      }
      for (int e = 0; e < kQK; ++e) codes[e] = row[b * kQK + e];  // Q4_x, Q5_x: codes as stored
      codec->set_codes(codes, block);
    }
  }
  return out;
}

DType gguf_type_for_requantizing(const AffineWeight& w) {
  switch (w.spec.bits) {
    case 2:
      return DType::Q2_K;
    case 3:
      return DType::Q3_K;
    case 4:
      return DType::Q4_K;
    case 5:
      return DType::Q5_K;
    case 8:
      return DType::Q8_0;
    default:
      return DType::Q6_K;
  }
}

}  // namespace lowbit::quant

namespace lowbit {

QuantizeReport write_affine_checkpoint_gguf(
    const Model& m, const std::string& path, int n_threads,
    const std::function<void(size_t, size_t, const TensorReport&)>& on_tensor,
    const CalibrationStats* stats) {
  if (m.affine_weights.empty())
    fail(ErrorKind::Argument, "{}: not an integer checkpoint (no quantized linears)", m.source);
  QuantizeOptions o;
  o.plan.preset = "F16";
  o.plan.pure = true;
  o.n_threads = n_threads;
  o.on_tensor = on_tensor;
  o.method = "grid kept from the checkpoint";
  std::map<std::string, bool> exact;  // tensor -> its codes are kept
  for (const auto& [name, w] : m.affine_weights) {
    const std::optional<DType> t = quant::gguf_type_holding(*w);
    o.plan.recipe[name] = t ? *t : quant::gguf_type_for_requantizing(*w);
    exact[name] = t.has_value();
  }
  // GPTQ for the linears rounded again: each one's Hessian and importance from `stats`.
  std::map<std::string, std::vector<double>> hessians;
  std::map<std::string, std::vector<float>> importance;
  if (stats) {
    for (const auto& [name, keep] : exact) {
      if (keep) continue;
      auto it = stats->by_weight.find(name);
      if (it == stats->by_weight.end() || it->second.xtx.empty())
        fail(ErrorKind::Argument, "calibration statistics have no Hessian for '{}'", name);
      hessians[name] = it->second.hessian();
      importance[name] = it->second.importance();
    }
    o.hessian = [&hessians](const std::string& n) -> const std::vector<double>* {
      auto it = hessians.find(n);
      return it == hessians.end() ? nullptr : &it->second;
    };
    o.importance = [&importance](const std::string& n) -> const std::vector<float>* {
      auto it = importance.find(n);
      return it == importance.end() ? nullptr : &it->second;
    };
    o.use_gptq = true;
    o.gptq.damp = kGptqGgufDamp;
    o.gptq.act_order = kGptqGgufActOrder;
    o.method = "grid kept from the checkpoint; gptq for the rest";
  }
  GgufQuantizeWriter writer(m, path, o);
  const std::vector<TensorPlan>& plan = writer.plan();
  for (const TensorPlan& p : plan) {
    auto it = m.affine_weights.find(p.name);
    if (it == m.affine_weights.end() || !exact[p.name] || p.type != o.plan.recipe[p.name])
      continue;  // requantized (or planned otherwise, e.g. a fallback) by the writer
    PrecomputedTensor t;
    t.bytes = quant::encode_affine_blocks(*it->second, p.type);
    const TensorView& src = m.tensor(p.name);
    const std::vector<float> x = to_f32(src);
    const std::vector<float> y =
        to_f32(TensorView{{p.name, p.type, src.shape}, t.bytes.data(), t.bytes.size()});
    ErrorSums e;
    e.add(x.data(), y.data(), x.size());
    t.rel_rms_error = e.relative_rms();  // 0, or the f16 rounding of Q4_1/Q5_1 offsets
    writer.put(p.name, t);
  }
  QuantizeReport r = writer.finish();
  for (TensorReport& t : r.tensors)
    if (m.affine_weights.count(t.name))
      t.note = exact[t.name] ? "codes kept" : "requantized (no GGUF type holds the grid)";
  return r;
}

}  // namespace lowbit
