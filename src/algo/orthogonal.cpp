// Hadamard and random orthogonal matrices for the rotations (lowbit/rotation.h).
#include <fmt/format.h>

#include <cmath>
#include <optional>
#include <random>

#include "lowbit/error.h"
#include "lowbit/rotation.h"

namespace lowbit {
namespace {

bool is_prime(uint32_t q) {
  if (q < 2) return false;
  for (uint32_t d = 2; uint64_t{d} * d <= q; ++d)
    if (q % d == 0) return false;
  return true;
}

// chi[x] for x in [0, q): 0 at 0, +1 when x is a nonzero square mod q, -1 otherwise.
std::vector<int> quadratic_character(uint32_t q) {
  std::vector<int> chi(q, -1);
  chi[0] = 0;
  for (uint64_t x = 1; x < q; ++x) chi[x * x % q] = 1;
  return chi;
}

// A Hadamard matrix of small order m (row-major, entries ±1) from a Paley construction.
struct SmallHadamard {
  uint32_t m = 1;
  std::vector<int> h{1};
};

// Paley I, order q + 1 for a prime q ≡ 3 (mod 4): H = I + S with S = [[0, 1ᵀ], [-1, J]],
// J[i][j] = chi(j - i) antisymmetric, so S is skew and S·Sᵀ = q·I.
SmallHadamard paley_one(uint32_t q) {
  const auto chi = quadratic_character(q);
  SmallHadamard r{q + 1, std::vector<int>(uint64_t{q + 1} * (q + 1))};
  auto at = [&](uint32_t i, uint32_t j) -> int& { return r.h[uint64_t{i} * r.m + j]; };
  for (uint32_t i = 0; i <= q; ++i)
    for (uint32_t j = 0; j <= q; ++j) {
      int s;
      if (i == 0)
        s = j == 0 ? 0 : 1;
      else if (j == 0)
        s = -1;
      else
        s = chi[(j + q - i) % q];
      at(i, j) = s + (i == j ? 1 : 0);
    }
  return r;
}

// Paley II, order 2(q + 1) for a prime q ≡ 1 (mod 4): the symmetric conference matrix
// C = [[0, 1ᵀ], [1, J]] with every 0 replaced by [[1, -1], [-1, -1]] and every ±1 by
// ±[[1, 1], [1, -1]].
SmallHadamard paley_two(uint32_t q) {
  const auto chi = quadratic_character(q);
  const uint32_t c = q + 1;
  SmallHadamard r{2 * c, std::vector<int>(uint64_t{4} * c * c)};
  for (uint32_t i = 0; i < c; ++i)
    for (uint32_t j = 0; j < c; ++j) {
      const int e = i == 0 ? (j == 0 ? 0 : 1) : j == 0 ? 1 : chi[(j + q - i) % q];
      const int block[2][2] = {{e == 0 ? 1 : e, e == 0 ? -1 : e},
                               {e == 0 ? -1 : e, e == 0 ? -1 : -e}};
      for (int a = 0; a < 2; ++a)
        for (int b = 0; b < 2; ++b) r.h[uint64_t{2 * i + a} * r.m + 2 * j + b] = block[a][b];
    }
  return r;
}

// The small factors built here: H_m costs m² values and the transform m additions per value,
// so m stays small (orders with only a larger factor go to `random`).
constexpr uint32_t kMaxFactor = 256;

enum class Construction { None, One, PaleyOne, PaleyTwo };

Construction construction(uint32_t m) {
  if (m == 1) return Construction::One;
  if (m > kMaxFactor) return Construction::None;
  if (m > 2 && is_prime(m - 1) && (m - 1) % 4 == 3) return Construction::PaleyOne;
  if (m % 2 == 0 && m > 4 && is_prime(m / 2 - 1) && (m / 2 - 1) % 4 == 1)
    return Construction::PaleyTwo;
  return Construction::None;
}

// n = m · 2^k with the largest k whose m has a construction (arithmetic only); 0 when none.
uint32_t find_factor(uint32_t n) {
  if (n == 0) return 0;
  int k = 0;
  while (((n >> k) & 1) == 0) ++k;
  for (; k >= 0; --k)
    if (construction(n >> k) != Construction::None) return n >> k;
  return 0;
}

SmallHadamard build_factor(uint32_t m) {
  switch (construction(m)) {
    case Construction::PaleyOne:
      return paley_one(m - 1);
    case Construction::PaleyTwo:
      return paley_two(m / 2 - 1);
    default:
      return SmallHadamard{};
  }
}

// A standard normal value from two 53-bit uniforms (Box–Muller), the same on every machine,
// unlike std::normal_distribution.
double gaussian(std::mt19937_64& rng) {
  constexpr double kTwoPi = 6.283185307179586;
  const double u1 = (static_cast<double>(rng() >> 11) + 1.0) * 0x1p-53;  // (0, 1]
  const double u2 = static_cast<double>(rng() >> 11) * 0x1p-53;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2);
}

// Haar-distributed orthogonal n × n (Stewart 1980): Q = I, then for k = 0 .. n-2 the
// Householder reflection that maps a random Gaussian x ∈ R^(n-k) to -sign(x₀)‖x‖e₁ applied to
// columns k.. of Q with column k then multiplied by -sign(x₀), and a random sign on the last
// column.
std::vector<float> haar_orthogonal(uint32_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<double> q(uint64_t{n} * n, 0.0), v(n);
  for (uint32_t i = 0; i < n; ++i) q[uint64_t{i} * n + i] = 1.0;
  for (uint32_t k = 0; k + 1 < n; ++k) {
    const uint32_t len = n - k;
    double norm2 = 0;
    for (uint32_t j = 0; j < len; ++j) v[j] = gaussian(rng), norm2 += v[j] * v[j];
    const bool x0_nonnegative = v[0] >= 0;
    v[0] += (x0_nonnegative ? 1 : -1) * std::sqrt(norm2);
    double vv = 0;
    for (uint32_t j = 0; j < len; ++j) vv += v[j] * v[j];
    if (vv == 0) continue;
    const double f = 2.0 / vv;
    for (uint32_t i = 0; i < n; ++i) {  // row i of Q[:, k:] -= f (row · v) vᵀ
      double* row = &q[uint64_t{i} * n + k];
      double dot = 0;
      for (uint32_t j = 0; j < len; ++j) dot += row[j] * v[j];
      dot *= f;
      for (uint32_t j = 0; j < len; ++j) row[j] -= dot * v[j];
    }
    // The reflection sends x to −sign(x₀)‖x‖e₁; column k times −sign(x₀) makes Q Haar
    // distributed (later reflections leave column k alone).
    if (x0_nonnegative)
      for (uint32_t i = 0; i < n; ++i) q[uint64_t{i} * n + k] = -q[uint64_t{i} * n + k];
  }
  if (rng() >> 63)
    for (uint32_t i = 0; i < n; ++i) q[uint64_t{i} * n + n - 1] = -q[uint64_t{i} * n + n - 1];
  return std::vector<float>(q.begin(), q.end());
}

}  // namespace

const char* rotation_name(RotationKind k) {
  switch (k) {
    case RotationKind::None:
      return "none";
    case RotationKind::Hadamard:
      return "hadamard";
    case RotationKind::Random:
      return "random";
  }
  return "?";
}

std::map<std::string, RotationKind> rotation_choices() {
  std::map<std::string, RotationKind> out;
  for (RotationKind k : {RotationKind::None, RotationKind::Hadamard, RotationKind::Random})
    out[rotation_name(k)] = k;
  return out;
}

std::optional<RotationKind> rotation_from_name(const std::string& name) {
  const auto all = rotation_choices();
  const auto it = all.find(name);
  return it == all.end() ? std::nullopt : std::optional<RotationKind>(it->second);
}

std::string rotation_label(const RotationOptions& o) {
  std::string label;
  if (o.kind != RotationKind::None)
    label = std::string(rotation_name(o.kind)) + " seed=" + std::to_string(o.seed) +
            (o.heads ? "" : " heads=0") +
            (o.learn.steps > 0 ? fmt::format(" learned={}", o.learn.steps) : "") +
            (o.learn.steps > 0 && o.learn.ce_weight > 0 ? fmt::format(" ce={}", o.learn.ce_weight)
                                                        : "");
  if (o.ffn_down) label += std::string(label.empty() ? "" : " ") + "ffn_down=online";
  return label;
}

bool has_hadamard(uint32_t n) {
  return find_factor(n) != 0;
}

HadamardFactor hadamard_factor(uint32_t n) {
  const uint32_t m = find_factor(n);
  if (!m)
    fail(ErrorKind::Unsupported,
         "no Hadamard matrix of order {} here (n = 2^k·m needs m = 1, a prime ≡ 3 mod 4 plus "
         "1, or twice a prime ≡ 1 mod 4 plus 2, with m ≤ {})",
         n, kMaxFactor);
  const SmallHadamard f = build_factor(m);
  return {f.m, std::vector<float>(f.h.begin(), f.h.end())};
}

std::vector<float> hadamard_matrix(uint32_t n) {
  const HadamardFactor f = hadamard_factor(n);
  const uint32_t p = n / f.m;  // the Walsh–Hadamard factor, a power of two
  std::vector<float> h(uint64_t{n} * n);
  for (uint32_t r = 0; r < n; ++r)
    for (uint32_t c = 0; c < n; ++c) {
      const int walsh = __builtin_popcount((r % p) & (c % p)) % 2 ? -1 : 1;
      h[uint64_t{r} * n + c] = f.h[uint64_t{r / p} * f.m + c / p] * static_cast<float>(walsh);
    }
  return h;
}

std::vector<float> orthogonal_matrix(RotationKind kind, uint32_t n, uint64_t seed) {
  if (kind == RotationKind::Random) return haar_orthogonal(n, seed);
  if (kind != RotationKind::Hadamard)
    fail(ErrorKind::Argument, "orthogonal_matrix: kind '{}' is not a rotation",
         rotation_name(kind));
  std::vector<float> q = hadamard_matrix(n);
  std::mt19937_64 rng(seed);
  const float scale = 1.0f / std::sqrt(static_cast<float>(n));
  for (uint32_t r = 0; r < n; ++r) {
    const float s = (rng() >> 63) ? -scale : scale;
    for (uint32_t c = 0; c < n; ++c) q[uint64_t{r} * n + c] *= s;
  }
  return q;
}

}  // namespace lowbit
