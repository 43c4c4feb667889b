// The GPTQ sweep (gptq_sweep.h) and its affine target. Per row tile:
//   1. permute the columns (act-order) and factor the damped inverse Hessian, U (upper);
//   2. in batches of columns: round each column of the batch, scale its error by 1/U[i,i],
//      subtract err * U[i, k] from the batch's later columns k;
//   3. apply the batch's errors to all later columns at once: W[:, after] -= E · U[batch, after]
//      (one SGEMM; this is GPTQ's "lazy batch" update, the same result in far fewer passes).

#include <algorithm>
#include <numeric>

#include "algo/gptq_sweep.h"
#include "core/blas.h"
#include "core/lapack.h"
#include "core/parallel.h"
#include "lowbit/affine.h"
#include "lowbit/error.h"
#include "lowbit/sparsity.h"

namespace lowbit::gptq {

// With P the order-reversing permutation and P(H+λ)P = R Rᵀ (R lower), (H+λ)⁻¹ = Uᵀ U with
// U = P R⁻¹ P upper: one Cholesky and one triangular inverse (2n³/3 flops), instead of
// inverting H and factoring the inverse (4n³/3). LAPACK is column-major, so on our
// row-major arrays "U" names the lower triangle.
std::vector<double> inverse_hessian_factor(std::vector<double> h, uint64_t n, double damp) {
  double mean_diag = 0;
  for (uint64_t j = 0; j < n; ++j) mean_diag += h[j * n + j];
  mean_diag = n ? mean_diag / n : 0;
  if (!(mean_diag > 0)) mean_diag = 1;
  const int ni = static_cast<int>(n);
  // Index (i, j) -> (n-1-i, n-1-j) reverses the flat array, so both flips are std::reverse
  // and the factor is made in place: two n x n arrays at a time (the widest, ffn_down's
  // 8192 inputs, is 512 MB each).
  std::vector<double> a;
  for (int attempt = 0; attempt < 6; ++attempt, damp *= 10) {
    a.assign(h.rbegin(), h.rend());
    for (uint64_t j = 0; j < n; ++j) a[j * n + j] += damp * mean_diag;
    int info = 0;
    dpotrf_("U", &ni, a.data(), &ni, &info);  // row-major lower R
    if (info != 0) continue;
    dtrtri_("U", "N", &ni, a.data(), &ni, &info);  // R⁻¹, still row-major lower
    if (info != 0) continue;
    std::vector<double>().swap(h);
    std::reverse(a.begin(), a.end());  // upper triangle: the factor; lower: LAPACK's leftovers
    for (uint64_t i = 0; i < n; ++i) std::fill_n(a.begin() + i * n, i, 0.0);
    return a;
  }
  fail(ErrorKind::Argument, "GPTQ: the Hessian stays singular after damping up to {}", damp);
}

void sweep(std::vector<float>& W, uint64_t rows, uint64_t cols, std::vector<double> H,
           const GptqOptions& o, GridRounder& rounder) {
  if (H.size() != cols * cols)
    fail(ErrorKind::Argument, "GPTQ: Hessian has {} values, expected {}x{}", H.size(), cols, cols);
  std::vector<double> h = std::move(H);
  for (uint64_t j = 0; j < cols; ++j)
    if (h[j * cols + j] == 0) {  // a dead input: any value works, keep it zero
      h[j * cols + j] = 1;
      for (uint64_t r = 0; r < rows; ++r) W[r * cols + j] = 0;
    }
  const SparsityPattern& prune = o.prune;
  const bool act_order = o.act_order && !prune.structured();  // N:M groups are column runs
  std::vector<uint64_t> perm(cols);
  std::iota(perm.begin(), perm.end(), 0);
  if (act_order)
    std::stable_sort(perm.begin(), perm.end(),
                     [&](uint64_t a, uint64_t b) { return h[a * cols + a] > h[b * cols + b]; });
  if (act_order) {  // H in the sweep's column order
    std::vector<double> hp(cols * cols);
    for (uint64_t i = 0; i < cols; ++i)
      for (uint64_t j = 0; j < cols; ++j) hp[i * cols + j] = h[perm[i] * cols + perm[j]];
    h = std::move(hp);
  }
  const uint64_t blen = std::min(rounder.block_len(), cols);
  const uint64_t n_blocks = (cols + blen - 1) / blen;
  const bool static_grids = act_order || blen == cols;
  // Without static grids a block's parameters are chosen from values that have received every
  // earlier column's update, so a batch must hold whole blocks; an N:M group is chosen from
  // its current values, so a batch holds whole groups too.
  uint64_t unit = static_grids ? 1 : blen;
  if (prune.structured()) {
    if (cols % prune.m != 0)
      fail(ErrorKind::Argument, "N:M sparsity {}:{}: rows of {} values are not whole groups",
           prune.n, prune.m, cols);
    unit = std::lcm(unit, uint64_t(prune.m));
  }
  const uint64_t batch = (std::max<uint64_t>({1, o.batch, unit}) + unit - 1) / unit * unit;

  // The sweep reads U in f32 for the batches' trailing updates (one SGEMM each) and in double
  // only inside each batch's diagonal block: those blocks are kept ([n_batches][batch][batch],
  // upper part) and the double U is freed, which saves cols² x 8 B during the sweep.
  std::vector<double> U = inverse_hessian_factor(std::move(h), cols, o.damp);
  const std::vector<float> Uf(U.begin(), U.end());
  const uint64_t n_batches = (cols + batch - 1) / batch;
  std::vector<double> Ud(n_batches * batch * batch, 0.0);
  for (uint64_t i = 0; i < cols; ++i) {
    const uint64_t b = i / batch, i1 = b * batch, i2 = std::min(cols, i1 + batch);
    for (uint64_t k = i; k < i2; ++k)
      Ud[b * batch * batch + (i - i1) * batch + (k - i1)] = U[i * cols + k];
  }
  std::vector<double> udiag(cols);  // U[i, i], the pruning scores' denominators
  for (uint64_t i = 0; i < cols; ++i) udiag[i] = U[i * cols + i];
  std::vector<double>().swap(U);
  const int threads = resolve_threads(o.n_threads);
  const uint64_t tile = 512;
  std::vector<float> Wp(std::min(rows, tile) * cols), E(std::min(rows, tile) * batch);
  // pruned[rr * cols + i]: the weight at sweep position i of the tile's row rr is pruned.
  const bool pruning = prune.active() || o.mask;
  std::vector<uint8_t> pruned(pruning ? std::min(rows, tile) * cols : 0);
  auto score = [&](float w, uint64_t i) {
    return static_cast<float>(w * w / (udiag[i] * udiag[i]));
  };

  for (uint64_t r0 = 0; r0 < rows; r0 += tile) {
    const uint64_t r1 = std::min(rows, r0 + tile), tr = r1 - r0;
    rounder.begin_rows(r0, r1);
    parallel_for(tr, threads, [&](uint64_t a, uint64_t b) {
      for (uint64_t rr = a; rr < b; ++rr) {
        const float* src = &W[(r0 + rr) * cols];
        if (static_grids)
          for (uint64_t g = 0; g < n_blocks; ++g) rounder.choose(r0 + rr, g, src + g * blen);
        for (uint64_t i = 0; i < cols; ++i) Wp[rr * cols + i] = src[perm[i]];
        if (pruning)
          for (uint64_t i = 0; i < cols; ++i)
            pruned[rr * cols + i] = o.mask && o.mask[(r0 + rr) * cols + perm[i]];
      }
    });
    for (uint64_t i1 = 0; i1 < cols; i1 += batch) {
      const uint64_t i2 = std::min(cols, i1 + batch), nb = i2 - i1;
      const double* ud =
          &Ud[(i1 / batch) * batch * batch];        // ud[(i - i1) * batch + (k - i1)] = U[i, k]
      if (prune.active() && !prune.structured()) {  // SparseGPT: the batch's share over the tile
        std::vector<float> s(tr * nb);
        for (uint64_t rr = 0; rr < tr; ++rr)
          for (uint64_t i = i1; i < i2; ++i) s[rr * nb + i - i1] = score(Wp[rr * cols + i], i);
        const std::vector<uint8_t> mk = mask_lowest(s, tr, nb, prune, true);
        for (uint64_t rr = 0; rr < tr; ++rr)
          for (uint64_t i = i1; i < i2; ++i) pruned[rr * cols + i] |= mk[rr * nb + i - i1];
      }
      parallel_for(tr, threads, [&](uint64_t a, uint64_t b) {
        for (uint64_t rr = a; rr < b; ++rr) {
          float* wr = &Wp[rr * cols];
          uint8_t* pr = pruning ? &pruned[rr * cols] : nullptr;
          for (uint64_t i = i1; i < i2; ++i) {
            const uint64_t j = perm[i];
            if (!static_grids && j % blen == 0)
              rounder.choose(r0 + rr, j / blen, wr + i);   // identity perm here
            if (prune.structured() && i % prune.m == 0) {  // SparseGPT N:M: this group's m - n
              float s[64];
              for (int k = 0; k < prune.m; ++k) s[k] = score(wr[i + k], i + k);
              mark_lowest(s, prune.m, prune.m - prune.n, pr + i);
            }
            const float q = rounder.round(r0 + rr, j, pr && pr[i] ? 0.0f : wr[i]);
            const double* ui = ud + (i - i1) * batch;  // ui[k - i1] = U[i, k]
            const double err = (wr[i] - q) / ui[i - i1];
            E[rr * nb + (i - i1)] = static_cast<float>(err);
            for (uint64_t k = i + 1; k < i2; ++k) wr[k] -= static_cast<float>(err * ui[k - i1]);
          }
        }
      });
      if (i2 < cols)
        blas::sgemm(threads, CblasNoTrans, CblasNoTrans, tr, cols - i2, nb, -1.0f, E.data(), nb,
                    &Uf[i1 * cols + i2], cols, 1.0f, &Wp[i2], cols);
    }
    rounder.end_rows(r0, r1);
  }
}

namespace {

// Affine groups: params per (row, group), or one set for the tensor (chosen up front).
class AffineRounder final : public GridRounder {
 public:
  AffineRounder(const float* w, uint64_t rows, uint64_t cols, const AffineSpec& spec)
      : spec_(spec),
        cols_(cols),
        glen_(spec.group_len(cols)),
        gpr_(spec.groups_per_row(cols)),
        codes_(rows * cols) {
    if (spec.group < 0) params_.assign(1, affine_group_params(w, rows * cols, spec));
    else params_.resize(rows * gpr_);
  }
  uint64_t block_len() const override { return glen_; }
  void begin_rows(uint64_t, uint64_t) override {}
  void choose(uint64_t row, uint64_t g, const float* values) override {
    if (spec_.group >= 0)
      params_[row * gpr_ + g] =
          affine_group_params(values, std::min(glen_, cols_ - g * glen_), spec_);
  }
  float round(uint64_t row, uint64_t col, float v) override {
    const AffineParams p = params_[spec_.group < 0 ? 0 : row * gpr_ + col / glen_];
    const int q = affine_code(v, p, spec_);
    codes_[row * cols_ + col] = static_cast<uint8_t>(q);
    return p.scale * (q - p.zero);
  }
  void end_rows(uint64_t, uint64_t) override {}

  AffineTensor tensor(uint64_t rows) const {
    AffineTensor out;
    for (const AffineParams& p : params_) {
      out.scales.push_back(p.scale);
      out.zeros.push_back(static_cast<uint8_t>(p.zero));
    }
    const uint64_t rb = packed_row_bytes(cols_, spec_.bits);
    out.codes.resize(rows * rb);
    for (uint64_t r = 0; r < rows; ++r)
      pack_bits(&codes_[r * cols_], cols_, spec_.bits, &out.codes[r * rb]);
    return out;
  }

 private:
  AffineSpec spec_;
  uint64_t cols_, glen_, gpr_;
  std::vector<AffineParams> params_;
  std::vector<uint8_t> codes_;
};

}  // namespace
}  // namespace lowbit::gptq

namespace lowbit {

AffineTensor gptq_quantize_affine(const float* w, uint64_t rows, uint64_t cols,
                                  const std::vector<double>& H, const AffineSpec& spec,
                                  const GptqOptions& o, std::vector<float>* dequantized) {
  validate(spec);
  std::vector<float> W(w, w + rows * cols);
  gptq::AffineRounder rounder(w, rows, cols, spec);
  gptq::sweep(W, rows, cols, H, o, rounder);
  AffineTensor out = rounder.tensor(rows);
  if (dequantized) {
    dequantized->resize(rows * cols);
    affine_dequantize(out, rows, cols, spec, dequantized->data());
  }
  return out;
}

}  // namespace lowbit
