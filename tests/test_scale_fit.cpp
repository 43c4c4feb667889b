// The vectorized scale searches of src/quant/scale_fit.cpp against plain scalar loops: the
// batched candidates must give bit-identical errors and fits, so that every quantized file
// stays byte-for-byte what the one-candidate-at-a-time search wrote.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "quant/scale_fit.h"

namespace lowbit::quant {
namespace {

int reference_round_clamp(float v, int lo, int hi) {
  return std::clamp(static_cast<int>(std::nearbyint(v)), lo, hi);
}

float reference_error_affine(const float* x, const float* w, int n, float scale, float offset,
                             int qmax) {
  const float is = scale > 0 ? 1.0f / scale : 0.0f;
  float err = 0;
  for (int i = 0; i < n; ++i) {
    const float e =
        x[i] -
        (scale * static_cast<float>(reference_round_clamp((x[i] - offset) * is, 0, qmax)) + offset);
    err += (w ? w[i] : 1.0f) * e * e;
  }
  return err;
}

// The search of fit_affine written one candidate at a time.
AffineFit reference_fit_affine(const float* x, const float* w, int n, int qmax,
                               bool offset_nonpositive) {
  float lo = *std::min_element(x, x + n), hi = *std::max_element(x, x + n);
  if (offset_nonpositive) lo = std::min(lo, 0.0f);
  if (hi <= lo) return {0.0f, offset_nonpositive ? std::min(lo, 0.0f) : lo};
  AffineFit best{(hi - lo) / qmax, lo};
  float best_err = reference_error_affine(x, w, n, best.scale, best.offset, qmax);
  auto refit = [&](float shift, float inv) -> AffineFit {
    double sw = 0, sq = 0, sqq = 0, sx = 0, sxq = 0;
    for (int i = 0; i < n; ++i) {
      const double wi = w ? w[i] : 1.0, q = reference_round_clamp((x[i] - shift) * inv, 0, qmax);
      sw += wi; sq += wi * q; sqq += wi * q * q; sx += wi * x[i]; sxq += wi * x[i] * q;
    }
    const double det = sw * sqq - sq * sq;
    if (det <= 0) return {-1, 0};
    AffineFit f{static_cast<float>((sw * sxq - sq * sx) / det),
                static_cast<float>((sqq * sx - sq * sxq) / det)};
    if (offset_nonpositive && f.offset > 0) f = {static_cast<float>(sqq > 0 ? sxq / sqq : 0), 0.0f};
    return f;
  };
  auto consider = [&](AffineFit f) {
    if (!(f.scale > 0)) return;
    const float err = reference_error_affine(x, w, n, f.scale, f.offset, qmax);
    if (err < best_err) { best_err = err; best = f; }
  };
  for (int k = -12; k <= 12; ++k) consider(refit(lo, (qmax + 0.06f * k) / (hi - lo)));
  for (int it = 0; it < 2; ++it) {
    const AffineFit cur = best;
    consider(refit(cur.offset, 1.0f / cur.scale));
  }
  return best;
}

// The search of fit_symmetric written one candidate at a time.
float reference_fit_symmetric(const float* x, const float* w, int n, int qmin, int qmax) {
  int arg = 0;
  for (int i = 1; i < n; ++i)
    if (std::fabs(x[i]) > std::fabs(x[arg])) arg = i;
  const float amax = x[arg];
  if (amax == 0) return 0;
  float best_d = 0, best_score = -1;
  for (int end : {qmax, qmin}) {
    if (end == 0) continue;
    for (int k = -10; k <= 10; ++k) {
      const float iscale = (end + 0.1f * k * (end > 0 ? 1 : -1)) / amax;
      double sxq = 0, sqq = 0;
      for (int i = 0; i < n; ++i) {
        const int q = reference_round_clamp(x[i] * iscale, qmin, qmax);
        const double wi = w ? w[i] : 1.0;
        sxq += wi * x[i] * q;
        sqq += wi * q * q;
      }
      if (sqq <= 0) continue;
      const double score = sxq * sxq / sqq;
      if (score > best_score) {
        best_score = static_cast<float>(score);
        best_d = static_cast<float>(sxq / sqq);
      }
    }
  }
  return best_d;
}

constexpr int kRepeats = 50;  // random groups per configuration: rare near-ties must come up

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// Values with ties (x.5 after scaling), repeats, a constant run and wide magnitudes.
std::vector<float> group(std::mt19937& rng, int n, int kind) {
  std::normal_distribution<float> g(0.0f, kind == 2 ? 30.0f : 0.02f);
  std::vector<float> x(n);
  for (float& v : x) v = g(rng);
  if (kind == 1)
    for (int i = 0; i < n; i += 3) x[i] = 0.5f * static_cast<float>(i % 7);  // exact halves
  if (kind == 3) std::fill(x.begin(), x.end(), -0.25f);
  return x;
}

TEST(ScaleFit, RoundClampIsNearbyintClamped) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-40.0f, 40.0f);
  for (int i = 0; i < 100000; ++i) {
    const float v = i % 4 == 0 ? 0.5f * std::floor(u(rng)) : u(rng);  // every fourth a tie
    ASSERT_EQ(round_clamp(v, 0, 15), reference_round_clamp(v, 0, 15)) << v;
    ASSERT_EQ(round_clamp(v, -32, 31), reference_round_clamp(v, -32, 31)) << v;
  }
  EXPECT_EQ(round_clamp(1e30f, 0, 63), 63);
  EXPECT_EQ(round_clamp(-1e30f, -4, 3), -4);
  EXPECT_EQ(round_clamp(2.5f, 0, 15), 2);  // ties to even
  EXPECT_EQ(round_clamp(3.5f, 0, 15), 4);
}

TEST(ScaleFit, BatchedAffineErrorsEqualTheScalarLoopBitForBit) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(0.1f, 3.0f);
  for (int n : {1, 7, 16, 32, 33}) {
    for (int k = 1; k <= kMaxAffineBatch; k += (k < 6 ? 1 : 5)) {
      const std::vector<float> x = group(rng, n, k % 3);
      std::vector<float> w(n);
      for (float& v : w) v = u(rng);
      std::vector<AffineFit> fits(k);
      for (int c = 0; c < k; ++c) fits[c] = {c == 2 ? 0.0f : 0.004f * (c + 1), -0.03f + 0.01f * c};
      for (const float* wp :
           {static_cast<const float*>(nullptr), static_cast<const float*>(w.data())}) {
        std::vector<float> errs(k);
        error_affine_batch(x.data(), wp, n, fits.data(), k, 15, errs.data());
        for (int c = 0; c < k; ++c) {
          const float want =
              reference_error_affine(x.data(), wp, n, fits[c].scale, fits[c].offset, 15);
          ASSERT_TRUE(same_bits(errs[c], want))
              << "n=" << n << " k=" << k << " c=" << c << ": " << errs[c] << " vs " << want;
        }
      }
    }
  }
}

TEST(ScaleFit, FitAffineEqualsTheOneCandidateAtATimeSearch) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(0.1f, 3.0f);
  int checked = 0;
  for (int n : {5, 16, 32, 37}) {
    for (int qmax : {3, 15, 31}) {
      for (int kind = 0; kind < 4 * kRepeats; ++kind) {
        for (bool nonpositive : {true, false}) {
          const std::vector<float> x = group(rng, n, kind % 4);
          std::vector<float> w(n);
          for (float& v : w) v = u(rng);
          for (const float* wp :
               {static_cast<const float*>(nullptr), static_cast<const float*>(w.data())}) {
            const AffineFit got = fit_affine(x.data(), wp, n, qmax, nonpositive);
            const AffineFit want = reference_fit_affine(x.data(), wp, n, qmax, nonpositive);
            ASSERT_TRUE(same_bits(got.scale, want.scale) && same_bits(got.offset, want.offset))
                << "n=" << n << " qmax=" << qmax << " kind=" << kind << ": (" << got.scale << ", "
                << got.offset << ") vs (" << want.scale << ", " << want.offset << ")";
            ++checked;
          }
        }
      }
    }
  }
  EXPECT_EQ(checked, 4 * 3 * 4 * kRepeats * 2 * 2);
}

TEST(ScaleFit, FitSymmetricEqualsTheOneCandidateAtATimeSearch) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(0.1f, 3.0f);
  int checked = 0;
  // Q3_K's, Q6_K's and IQ4-style ranges, and one with qmin = 0 (only the qmax end is tried).
  const int ranges[][2] = {{-4, 3}, {-32, 31}, {-8, 7}, {0, 15}};
  for (int n : {5, 16, 32, 37}) {
    for (const auto& r : ranges) {
      for (int kind = 0; kind < 4 * kRepeats; ++kind) {
        const std::vector<float> x = group(rng, n, kind % 4);
        std::vector<float> w(n);
        for (float& v : w) v = u(rng);
        for (const float* wp :
             {static_cast<const float*>(nullptr), static_cast<const float*>(w.data())}) {
          const float got = fit_symmetric(x.data(), wp, n, r[0], r[1]);
          const float want = reference_fit_symmetric(x.data(), wp, n, r[0], r[1]);
          ASSERT_TRUE(same_bits(got, want)) << "n=" << n << " range [" << r[0] << ", " << r[1]
                                            << "] kind=" << kind << ": " << got << " vs " << want;
          ++checked;
        }
      }
    }
  }
  EXPECT_EQ(checked, 4 * 4 * 4 * kRepeats * 2);
}

}  // namespace
}  // namespace lowbit::quant

namespace lowbit::quant {
namespace {

// Weighted error of ternary codes at scale d, each value rounded to the nearest of -d, 0, d.
double ternary_error(const std::vector<float>& x, const std::vector<float>& w, double d) {
  double e = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double q = d > 0 ? std::clamp(std::nearbyint(x[i] / d), -1.0, 1.0) : 0.0;
    e += w[i] * (x[i] - d * q) * (x[i] - d * q);
  }
  return e;
}

// fit_ternary is the exact optimum: no scale on a fine sweep does better, and it beats
// llama.cpp's d = max|x|.
TEST(ScaleFit, FitTernaryIsTheBestScale) {
  std::mt19937 rng(3);
  std::normal_distribution<float> n01(0, 1);
  std::lognormal_distribution<float> ln(0, 1);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<float> x(256), w(256);
    for (auto& v : x) v = n01(rng) * (trial % 3 == 0 ? 5.0f : 1.0f);
    for (auto& v : w) v = trial % 2 ? ln(rng) : 1.0f;
    const float d = fit_ternary(x.data(), w.data(), 256);
    const double best = ternary_error(x, w, d);
    float amax = 0;
    for (float v : x) amax = std::max(amax, std::fabs(v));
    for (int k = 1; k <= 4000; ++k)
      EXPECT_LE(best, ternary_error(x, w, amax * k / 4000.0) * (1 + 1e-6));
    EXPECT_LT(best, ternary_error(x, w, amax));
  }
  const std::vector<float> zero(256, 0.0f);
  EXPECT_EQ(fit_ternary(zero.data(), nullptr, 256), 0.0f);
}

}  // namespace
}  // namespace lowbit::quant
