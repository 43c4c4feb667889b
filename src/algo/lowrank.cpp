// Low-rank branches (lowbit/lowrank.h): truncated SVD of each chosen block linear, the
// residual in its place, and the checks a file's factors must pass.
#include "lowbit/lowrank.h"

#include <algorithm>
#include <cmath>
#include <regex>

#include "core/lapack.h"
#include "lowbit/error.h"
#include "lowbit/float_convert.h"
#include "lowbit/topology.h"

namespace lowbit {
namespace {

constexpr const char* kA = ".lowrank_a";
constexpr const char* kB = ".lowrank_b";

std::string stem(const std::string& weight) {
  const std::string suffix = ".weight";
  if (weight.size() <= suffix.size() ||
      weight.compare(weight.size() - suffix.size(), suffix.size(), suffix))
    fail(ErrorKind::Argument, "low-rank branch: '{}' is not a weight name", weight);
  return weight.substr(0, weight.size() - suffix.size());
}

bool ends_with(const std::string& s, const char* tail) {
  const size_t n = std::char_traits<char>::length(tail);
  return s.size() > n && s.compare(s.size() - n, n, tail) == 0;
}

float f16_value(double v) {
  return f16_to_f32(f32_to_f16(static_cast<float>(v)));
}

}  // namespace

std::string lowrank_a_name(const std::string& weight) {
  return stem(weight) + kA;
}
std::string lowrank_b_name(const std::string& weight) {
  return stem(weight) + kB;
}
bool is_lowrank_tensor(const std::string& name) {
  return ends_with(name, kA) || ends_with(name, kB);
}
bool is_lowrank_a(const std::string& name) {
  return ends_with(name, kA);
}
std::string lowrank_weight(const std::string& factor) {
  if (!is_lowrank_tensor(factor))
    fail(ErrorKind::Argument, "'{}' is not a low-rank factor", factor);
  return factor.substr(0, factor.size() - std::char_traits<char>::length(kA)) + ".weight";
}

LowRankFactors lowrank_svd(const float* w, uint64_t rows, uint64_t cols, uint32_t rank) {
  const int m = static_cast<int>(rows), n = static_cast<int>(cols), k = std::min(m, n);
  LowRankFactors f;
  f.rank = std::min<uint32_t>(rank, static_cast<uint32_t>(k));
  // Column-major copy A[i + j·m] = w[i, j]; economy SVD A = U·diag(s)·Vᵀ with U [m, k] and
  // Vᵀ [k, n], both column-major.
  std::vector<double> a(rows * cols), s(k), u(static_cast<size_t>(m) * k),
      vt(static_cast<size_t>(k) * n);
  for (uint64_t i = 0; i < rows; ++i)
    for (uint64_t j = 0; j < cols; ++j) a[i + j * rows] = w[i * cols + j];
  std::vector<int> iwork(8 * static_cast<size_t>(k));
  int lwork = -1, info = 0;
  double query = 0;
  const char jobz = 'S';
  dgesdd_(&jobz, &m, &n, a.data(), &m, s.data(), u.data(), &m, vt.data(), &k, &query, &lwork,
          iwork.data(), &info);
  lwork = static_cast<int>(query);
  std::vector<double> work(std::max(1, lwork));
  dgesdd_(&jobz, &m, &n, a.data(), &m, s.data(), u.data(), &m, vt.data(), &k, work.data(), &lwork,
          iwork.data(), &info);
  if (info != 0)
    fail(ErrorKind::Argument, "low-rank branch: the SVD of a [{}, {}] matrix failed ({})", rows,
         cols, info);
  const uint32_t r = f.rank;
  f.a.resize(size_t{r} * cols);
  f.b.resize(rows * r);
  for (uint32_t q = 0; q < r; ++q) {
    for (uint64_t j = 0; j < cols; ++j) f.a[q * cols + j] = f16_value(vt[q + j * k]);
    for (uint64_t i = 0; i < rows; ++i) f.b[i * r + q] = f16_value(u[i + q * rows] * s[q]);
  }
  double total = 0, kept = 0;
  for (int q = 0; q < k; ++q)
    total += s[q] * s[q], kept += q < static_cast<int>(r) ? s[q] * s[q] : 0;
  f.energy = total > 0 ? kept / total : 0;
  return f;
}

LowRankResult add_lowrank(const Model& m, const LowRankOptions& o) {
  if (o.rank == 0) fail(ErrorKind::Argument, "low-rank branch: a rank of 0");
  if (m.config.lowrank_rank)
    fail(ErrorKind::Argument, "{}: the model has low-rank branches already", m.source);
  if (!m.int8_weights.empty())
    fail(ErrorKind::Unsupported, "{}: a W8A8 checkpoint cannot take low-rank branches", m.source);
  std::regex only;
  try {
    only = std::regex(o.only.empty() ? ".*" : o.only);
  } catch (const std::regex_error& e) {
    fail(ErrorKind::Argument, "low-rank branch: bad regex '{}': {}", o.only, e.what());
  }
  LowRankResult out{m, {}};
  uint32_t max_rank = 0;
  for (const TensorView& t : m.tensors) {
    if (!is_block_linear(t.name) || !std::regex_search(t.name, only)) continue;
    const uint64_t rows = t.shape[0], cols = t.row_len();
    std::vector<float> w = to_f32(t);
    auto finite = [](const std::vector<float>& v) {
      return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
    };
    if (!finite(w))
      fail(ErrorKind::Argument, "low-rank branch: tensor '{}' has values that are not finite",
           t.name);
    LowRankFactors f;
    try {
      f = lowrank_svd(w.data(), rows, cols, o.rank);
    } catch (const Error& e) {
      fail(ErrorKind::Argument, "tensor '{}': {}", t.name, e.what());
    }
    if (!finite(f.a) || !finite(f.b))
      fail(ErrorKind::Argument, "low-rank branch of '{}': a factor overflows f16", t.name);
    // Residual R = W − B·A, in double per entry.
    for (uint64_t i = 0; i < rows; ++i)
      for (uint64_t j = 0; j < cols; ++j) {
        double ba = 0;
        for (uint32_t q = 0; q < f.rank; ++q) ba += double{f.b[i * f.rank + q]} * f.a[q * cols + j];
        w[i * cols + j] = static_cast<float>(w[i * cols + j] - ba);
      }
    out.model.set_f32(t.name, std::move(w));
    out.model.add_f32(lowrank_a_name(t.name), {f.rank, cols}, std::move(f.a));
    out.model.add_f32(lowrank_b_name(t.name), {rows, f.rank}, std::move(f.b));
    out.energy.emplace_back(t.name, f.energy);
    max_rank = std::max(max_rank, f.rank);
  }
  if (out.energy.empty())
    fail(ErrorKind::Argument, "low-rank branch: '{}' matches no block linear of {}", o.only,
         m.source);
  out.model.config.lowrank_rank = max_rank;
  return out;
}

void validate_lowrank_tensors(const Model& m) {
  const uint32_t key_rank = m.config.lowrank_rank;
  bool any = false;
  for (const TensorView& t : m.tensors) {
    if (!is_lowrank_tensor(t.name)) continue;
    any = true;
    if (!key_rank)
      fail(ErrorKind::Format, "{}: tensor '{}' is a low-rank factor, but the file has no key '{}'",
           m.source, t.name, kLowRankKey);
    const bool is_a = is_lowrank_a(t.name);
    const std::string weight = lowrank_weight(t.name);
    const TensorView* w = m.find(weight);
    if (!w || !is_block_linear(weight))
      fail(ErrorKind::Format, "{}: tensor '{}': no block linear '{}' for it", m.source, t.name,
           weight);
    const TensorView* partner = m.find(is_a ? lowrank_b_name(weight) : lowrank_a_name(weight));
    if (!partner)
      fail(ErrorKind::Format, "{}: tensor '{}' without its partner '{}'", m.source, t.name,
           is_a ? lowrank_b_name(weight) : lowrank_a_name(weight));
    if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16)
      fail(ErrorKind::Format, "{}: tensor '{}' is {}: low-rank factors are F32, F16 or BF16",
           m.source, t.name, dtype_name(t.dtype));
    const TensorView& a = is_a ? t : *partner;
    const TensorView& b = is_a ? *partner : t;
    const uint64_t r = a.shape.size() == 2 ? a.shape[0] : 0;
    const std::vector<uint64_t> want =
        is_a ? std::vector<uint64_t>{r, w->row_len()} : std::vector<uint64_t>{w->shape[0], r};
    if (a.shape.size() != 2 || b.shape.size() != 2 || t.shape != want || r == 0 || r > key_rank)
      fail(ErrorKind::Format,
           "{}: tensor '{}': shape {} does not fit '{}' {} with rank {} (1..{} by '{}')", m.source,
           t.name, shape_string(t.shape), weight, shape_string(w->shape), r, key_rank, kLowRankKey);
  }
  if (key_rank && !any)
    fail(ErrorKind::Format, "{}: key '{}' is {} but the file has no low-rank factors", m.source,
         kLowRankKey, key_rank);
}

std::string lowrank_label(const LowRankOptions& o, double alpha) {
  if (!o.rank) return "";
  std::string s = "rank=" + std::to_string(o.rank);
  if (alpha) s += fmt::format(" alpha={:g}", alpha);
  if (!o.only.empty()) s += " only=" + o.only;
  return s;
}

void refuse_lowrank(const Model& m, const std::string& what) {
  if (m.config.lowrank_rank)
    fail(ErrorKind::Unsupported,
         "{}: the model has low-rank branches (SVDQuant), which {} cannot carry: only lowbit's "
         "GGUF files do",
         m.source, what);
}

}  // namespace lowbit
