#include "lowbit/gptq.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "lowbit/error.h"

namespace lowbit {
namespace {

// In-place lower Cholesky factor of the n x n matrix a (row-major); false if not positive definite.
bool cholesky_lower(std::vector<double>& a, uint64_t n) {
  for (uint64_t j = 0; j < n; ++j) {
    double d = a[j * n + j];
    for (uint64_t k = 0; k < j; ++k) d -= a[j * n + k] * a[j * n + k];
    if (!(d > 0)) return false;
    d = std::sqrt(d);
    a[j * n + j] = d;
    for (uint64_t i = j + 1; i < n; ++i) {
      double s = a[i * n + j];
      for (uint64_t k = 0; k < j; ++k) s -= a[i * n + k] * a[j * n + k];
      a[i * n + j] = s / d;
    }
    for (uint64_t k = j + 1; k < n; ++k) a[j * n + k] = 0;
  }
  return true;
}

// Upper factor U of H^-1 = U^T U, the quantity GPTQ's sweep uses (row i of U gives the
// update of the later columns when column i is rounded). Retries with more damping.
std::vector<double> inverse_hessian_factor(std::vector<double> h, uint64_t n, double damp) {
  double mean_diag = 0;
  for (uint64_t j = 0; j < n; ++j) mean_diag += h[j * n + j];
  mean_diag = n ? mean_diag / n : 0;
  if (!(mean_diag > 0)) mean_diag = 1;
  for (int attempt = 0; attempt < 6; ++attempt, damp *= 10) {
    std::vector<double> l = h;
    for (uint64_t j = 0; j < n; ++j) l[j * n + j] += damp * mean_diag;
    if (!cholesky_lower(l, n)) continue;
    // Inverse of L (lower), column by column, then H^-1 = L^-T L^-1.
    std::vector<double> li(n * n, 0.0);
    for (uint64_t c = 0; c < n; ++c) {
      li[c * n + c] = 1.0 / l[c * n + c];
      for (uint64_t i = c + 1; i < n; ++i) {
        double s = 0;
        for (uint64_t k = c; k < i; ++k) s += l[i * n + k] * li[k * n + c];
        li[i * n + c] = -s / l[i * n + i];
      }
    }
    std::vector<double> hinv(n * n, 0.0);
    for (uint64_t i = 0; i < n; ++i)
      for (uint64_t j = 0; j <= i; ++j) {
        double s = 0;
        for (uint64_t k = i; k < n; ++k) s += li[k * n + i] * li[k * n + j];
        hinv[i * n + j] = hinv[j * n + i] = s;
      }
    if (!cholesky_lower(hinv, n)) continue;
    std::vector<double> u(n * n);
    for (uint64_t i = 0; i < n; ++i)
      for (uint64_t j = 0; j < n; ++j) u[i * n + j] = hinv[j * n + i];
    return u;
  }
  fail(ErrorKind::Argument, "GPTQ: the Hessian stays singular after damping up to {}", damp);
}

}  // namespace

AffineTensor gptq_quantize_affine(const float* w, uint64_t rows, uint64_t cols, const std::vector<double>& H,
                                  const AffineSpec& spec, const GptqOptions& o, std::vector<float>* dequantized) {
  validate(spec);
  if (H.size() != cols * cols) fail(ErrorKind::Argument, "GPTQ: Hessian has {} values, expected {}x{}", H.size(), cols, cols);
  std::vector<float> W(w, w + rows * cols);
  std::vector<double> h = H;
  for (uint64_t j = 0; j < cols; ++j)
    if (h[j * cols + j] == 0) {  // a dead input: any value works, keep it zero
      h[j * cols + j] = 1;
      for (uint64_t r = 0; r < rows; ++r) W[r * cols + j] = 0;
    }
  std::vector<uint64_t> perm(cols);
  std::iota(perm.begin(), perm.end(), 0);
  if (o.act_order)
    std::stable_sort(perm.begin(), perm.end(), [&](uint64_t a, uint64_t b) { return h[a * cols + a] > h[b * cols + b]; });
  std::vector<double> hp(cols * cols);
  for (uint64_t i = 0; i < cols; ++i)
    for (uint64_t j = 0; j < cols; ++j) hp[i * cols + j] = h[perm[i] * cols + perm[j]];
  const std::vector<double> U = inverse_hessian_factor(std::move(hp), cols, o.damp);

  const uint64_t gpr = spec.groups_per_row(cols), glen = spec.group_len(cols);
  const bool static_groups = o.act_order || spec.group < 0;
  AffineTensor out;
  out.scales.resize(spec.group < 0 ? 1 : rows * gpr);
  out.zeros.resize(out.scales.size());
  std::vector<AffineParams> params(out.scales.size());
  auto param_index = [&](uint64_t r, uint64_t col) { return spec.group < 0 ? 0 : r * gpr + col / glen; };
  auto set_params = [&](uint64_t r, uint64_t g) {  // from the current W
    const uint64_t c0 = g * glen, c1 = std::min(cols, c0 + glen);
    params[r * gpr + g] = affine_group_params(&W[r * cols + c0], c1 - c0, spec);
  };
  if (spec.group < 0) params[0] = affine_group_params(W.data(), W.size(), spec);
  else if (static_groups)
    for (uint64_t r = 0; r < rows; ++r)
      for (uint64_t g = 0; g < gpr; ++g) set_params(r, g);

  std::vector<uint8_t> codes(rows * cols);
  for (uint64_t i = 0; i < cols; ++i) {
    const uint64_t j = perm[i];
    for (uint64_t r = 0; r < rows; ++r) {
      if (!static_groups && j % glen == 0) set_params(r, j / glen);
      const AffineParams p = params[param_index(r, j)];
      const int q = affine_code(W[r * cols + j], p, spec.bits);
      codes[r * cols + j] = static_cast<uint8_t>(q);
      const double err = (W[r * cols + j] - p.scale * (q - p.zero)) / U[i * cols + i];
      for (uint64_t k = i + 1; k < cols; ++k) W[r * cols + perm[k]] -= static_cast<float>(err * U[i * cols + k]);
    }
  }
  for (size_t k = 0; k < params.size(); ++k) {
    out.scales[k] = params[k].scale;
    out.zeros[k] = static_cast<uint8_t>(params[k].zero);
  }
  const uint64_t rb = packed_row_bytes(cols, spec.bits);
  out.codes.resize(rows * rb);
  for (uint64_t r = 0; r < rows; ++r) pack_bits(&codes[r * cols], cols, spec.bits, &out.codes[r * rb]);
  if (dequantized) {
    dequantized->resize(rows * cols);
    affine_dequantize(out, rows, cols, spec, dequantized->data());
  }
  return out;
}

}  // namespace lowbit
