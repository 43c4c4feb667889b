#include "lowbit/affine.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "lowbit/error.h"
#include "lowbit/float_convert.h"

namespace lowbit {
namespace {

using Params = AffineParams;

// Scales are stored as f16; round them here so the codes are chosen for the stored value.
float storable_scale(float s) { return std::max(f16_to_f32(f32_to_f16(s)), 1.0f / (1 << 24)); }

// Scale and zero point for values x[0..n) clipped to [lo, hi].
Params params_for_range(float lo, float hi, const AffineSpec& s) {
  const int qmax = (1 << s.bits) - 1;
  if (s.symmetric) {
    const float amax = std::max(std::fabs(lo), std::fabs(hi));
    const int half = 1 << (s.bits - 1);
    return {amax > 0 ? storable_scale(amax / (half - 1)) : 1.0f, half};
  }
  lo = std::min(lo, 0.0f);  // keep 0 exactly representable, as GPTQ/AWQ do
  hi = std::max(hi, 0.0f);
  if (hi <= lo) return {1.0f, 0};
  const float scale = storable_scale((hi - lo) / qmax);
  return {scale, std::clamp(static_cast<int>(std::nearbyint(-lo / scale)), 0, qmax)};
}

double group_error(const float* x, uint64_t n, Params p, const AffineSpec& s) {
  double e = 0;
  for (uint64_t i = 0; i < n; ++i) {
    const double d = x[i] - p.scale * (affine_code(x[i], p, s) - p.zero);
    e += d * d;
  }
  return e;
}

// Ternary and binary scales (AffineLevels), codes around the int2 zero point 2.
Params two_level_params(const float* x, uint64_t n, const AffineSpec& s) {
  double sum = 0;
  for (uint64_t i = 0; i < n; ++i) sum += std::fabs(x[i]);
  const double mean = n ? sum / static_cast<double>(n) : 0;
  double scale = mean;  // binary: the least-squares scale of sign(x)
  if (s.levels == AffineLevels::Ternary && s.range == RangeMethod::Mse) {
    // Exact: the k largest |x| nonzero, error sum x^2 - (their sum)^2 / k, best over k.
    std::vector<float> a(n);
    for (uint64_t i = 0; i < n; ++i) a[i] = std::fabs(x[i]);
    std::sort(a.begin(), a.end(), std::greater<>());
    double prefix = 0, best = 0;
    for (uint64_t k = 1; k <= n; ++k) {
      prefix += a[k - 1];
      if (prefix * prefix / static_cast<double>(k) > best)
        best = prefix * prefix / static_cast<double>(k), scale = prefix / static_cast<double>(k);
    }
  } else if (s.levels == AffineLevels::Ternary) {  // TWN: threshold 0.7 mean |x|
    double above = 0;
    uint64_t count = 0;
    for (uint64_t i = 0; i < n; ++i)
      if (std::fabs(x[i]) > 0.7 * mean) above += std::fabs(x[i]), ++count;
    scale = count ? above / static_cast<double>(count) : 0;
  }
  // An all-zero group keeps the smallest scale: binary has no 0, its values are then +-2^-24.
  return {storable_scale(static_cast<float>(scale)), 2};
}

// Value at percentile `pct` (0..100) of v (copied, partially sorted).
float percentile_of(std::vector<float> v, double pct) {
  const size_t k =
      std::min(v.size() - 1, static_cast<size_t>(std::floor(pct / 100.0 * (v.size() - 1) + 0.5)));
  std::nth_element(v.begin(), v.begin() + k, v.end());
  return v[k];
}

Params choose_params(const float* x, uint64_t n, const AffineSpec& s) {
  if (s.levels != AffineLevels::All) return two_level_params(x, n, s);
  float lo = *std::min_element(x, x + n), hi = *std::max_element(x, x + n);
  switch (s.range) {
    case RangeMethod::MinMax:
      return params_for_range(lo, hi, s);
    case RangeMethod::Percentile: {
      std::vector<float> v(x, x + n);
      if (s.symmetric) {
        for (auto& a : v) a = std::fabs(a);
        const float c = percentile_of(v, s.percentile);
        return params_for_range(-c, c, s);
      }
      return params_for_range(percentile_of(v, 100.0 - s.percentile),
                              percentile_of(v, s.percentile), s);
    }
    case RangeMethod::Mse: {
      Params best = params_for_range(lo, hi, s);
      double best_err = group_error(x, n, best, s);
      for (int k = 1; k <= 25; ++k) {  // shrink the range to 98%, 96%, ..., 50%
        const float f = 1.0f - 0.02f * k;
        const Params p = params_for_range(lo * f, hi * f, s);
        const double e = group_error(x, n, p, s);
        if (e < best_err) { best_err = e; best = p; }
      }
      return best;
    }
  }
  return params_for_range(lo, hi, s);
}

}  // namespace

AffineParams affine_group_params(const float* x, uint64_t n, const AffineSpec& spec) {
  return choose_params(x, n, spec);
}

const char* affine_format_name(AffineFormat f) {
  switch (f) {
    case AffineFormat::Gptq: return "gptq";
    case AffineFormat::Awq: return "awq";
    case AffineFormat::CompressedTensors: return "compressed-tensors";
    default: return "lowbit";
  }
}

bool parse_affine_format(const std::string& name, AffineFormat* out) {
  for (AffineFormat f : {AffineFormat::Lowbit, AffineFormat::Gptq, AffineFormat::Awq,
                         AffineFormat::CompressedTensors})
    if (name == affine_format_name(f)) return *out = f, true;
  return false;
}

std::string AffineSpec::describe() const {
  const char* r = range == RangeMethod::MinMax       ? "minmax"
                  : range == RangeMethod::Percentile ? "percentile"
                                                     : "mse";
  const std::string g = group > 0    ? "g" + std::to_string(group)
                        : group == 0 ? "per-channel"
                                     : "per-tensor";
  if (levels != AffineLevels::All)
    return std::string(levels == AffineLevels::Ternary ? "ternary " : "binary ") + g + " " + r;
  return "int" + std::to_string(bits) + " " + g + (symmetric ? " sym " : " asym ") + r;
}

void validate(const AffineSpec& s) {
  if (s.bits < 2 || s.bits > 8)
    fail(ErrorKind::Argument, "affine quantization: bits must be 2..8, got {}", s.bits);
  if (s.levels != AffineLevels::All && (s.bits != 2 || !s.symmetric))
    fail(ErrorKind::Argument,
         "affine quantization: {} weights are stored as int2 symmetric codes, not int{} {}",
         s.levels == AffineLevels::Ternary ? "ternary" : "binary", s.bits,
         s.symmetric ? "sym" : "asym");
  if (s.group < -1)
    fail(ErrorKind::Argument,
         "affine quantization: group size must be > 0, 0 (per channel) or -1 (per tensor), got {}",
         s.group);
  if (s.range == RangeMethod::Percentile && !(s.percentile > 50 && s.percentile <= 100))
    fail(ErrorKind::Argument, "affine quantization: percentile must be in (50, 100], got {}",
         s.percentile);
}

uint64_t packed_row_bytes(uint64_t cols, int bits) { return (cols * bits + 7) / 8; }

void pack_bits(const uint8_t* codes, uint64_t n, int bits, uint8_t* out) {
  std::memset(out, 0, packed_row_bytes(n, bits));
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t bit = i * bits;
    const uint32_t v = static_cast<uint32_t>(codes[i] & ((1u << bits) - 1)) << (bit % 8);
    out[bit / 8] |= static_cast<uint8_t>(v);
    if ((bit % 8) + bits > 8) out[bit / 8 + 1] |= static_cast<uint8_t>(v >> 8);
  }
}

void unpack_bits(const uint8_t* in, uint64_t n, int bits, uint8_t* codes) {
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t bit = i * bits;
    uint32_t v = in[bit / 8] >> (bit % 8);
    if ((bit % 8) + bits > 8) v |= static_cast<uint32_t>(in[bit / 8 + 1]) << (8 - bit % 8);
    codes[i] = static_cast<uint8_t>(v & ((1u << bits) - 1));
  }
}

AffineTensor affine_quantize(const float* x, uint64_t rows, uint64_t cols, const AffineSpec& s) {
  validate(s);
  const uint64_t gpr = s.groups_per_row(cols), glen = s.group_len(cols),
                 row_bytes = packed_row_bytes(cols, s.bits);
  AffineTensor t;
  t.codes.resize(rows * row_bytes);
  const uint64_t n_params = s.group < 0 ? 1 : rows * gpr;
  t.scales.resize(n_params);
  t.zeros.resize(n_params);
  Params whole{};
  if (s.group < 0) {
    whole = choose_params(x, rows * cols, s);
    t.scales[0] = whole.scale;
    t.zeros[0] = static_cast<uint8_t>(whole.zero);
  }
  std::vector<uint8_t> codes(cols);
  for (uint64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    for (uint64_t g = 0; g < gpr; ++g) {
      const uint64_t c0 = g * glen, c1 = std::min<uint64_t>(cols, c0 + glen);
      Params p = whole;
      if (s.group >= 0) {
        p = choose_params(xr + c0, c1 - c0, s);
        t.scales[r * gpr + g] = p.scale;
        t.zeros[r * gpr + g] = static_cast<uint8_t>(p.zero);
      }
      for (uint64_t c = c0; c < c1; ++c) codes[c] = static_cast<uint8_t>(affine_code(xr[c], p, s));
    }
    pack_bits(codes.data(), cols, s.bits, t.codes.data() + r * row_bytes);
  }
  return t;
}

void affine_dequantize(const AffineTensor& t, uint64_t rows, uint64_t cols, const AffineSpec& s,
                       float* out) {
  const uint64_t gpr = s.groups_per_row(cols), glen = s.group_len(cols),
                 row_bytes = packed_row_bytes(cols, s.bits);
  std::vector<uint8_t> codes(cols);
  for (uint64_t r = 0; r < rows; ++r) {
    unpack_bits(t.codes.data() + r * row_bytes, cols, s.bits, codes.data());
    for (uint64_t c = 0; c < cols; ++c) {
      const uint64_t k = s.group < 0 ? 0 : r * gpr + c / glen;
      out[r * cols + c] = t.scales[k] * (static_cast<int>(codes[c]) - t.zeros[k]);
    }
  }
}

}  // namespace lowbit
