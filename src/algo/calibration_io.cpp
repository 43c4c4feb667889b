// Calibration statistics files: GGUF imatrix (written and read) and llama.cpp's legacy
// imatrix.dat (read): int32 n_entries, then per entry {int32 name_len, name, int32 ncall,
// int32 nval, float values[nval]} (values are Σx² / (ncall·chunk) scaled sums; their
// ratios are what matters), then int32 chunk_count and the dataset name.
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/mapped_reader.h"
#include "core/names.h"
#include "lowbit/calibration.h"
#include "lowbit/error.h"
#include "lowbit/file_io.h"
#include "lowbit/gguf.h"

namespace lowbit {
namespace {

// "<weight>.in_hessian": F32 [cols, cols], the mean Σ x xᵀ / count; returned as the sum.
std::vector<double> read_hessian(const std::string& path, const TensorView& t, uint64_t cols,
                                 uint64_t count) {
  if (t.dtype != DType::F32 || t.shape.size() != 2 || t.shape[0] != cols || t.shape[1] != cols)
    fail(ErrorKind::Format,
         "{}: tensor '{}' must be F32 [{}, {}] (the weight has {} input columns), found {} {}",
         path, t.name, cols, cols, cols, dtype_name(t.dtype), shape_string(t.shape));
  const std::vector<float> mean = to_f32(t);
  std::vector<double> sum(mean.size());
  for (size_t i = 0; i < sum.size(); ++i) {
    if (!std::isfinite(mean[i]))
      fail(ErrorKind::Format, "{}: tensor '{}' holds a non-finite value at {}", path, t.name, i);
    sum[i] = static_cast<double>(mean[i]) * static_cast<double>(count);
  }
  return sum;
}

// Sums of squares (and largest magnitudes) are finite and not negative: a NaN would become
// an all-zero importance and a silently wrong file.
template <typename Values>
void check_sums(const std::string& path, const std::string& tensor, const Values& v) {
  for (size_t i = 0; i < v.size(); ++i)
    if (!(v[i] >= 0) || !std::isfinite(v[i]))
      fail(ErrorKind::Format,
           "{}: tensor '{}' holds {} at column {}; statistics must be finite and not negative",
           path, tensor, double(v[i]), i);
}

CalibrationStats read_gguf_stats(const std::string& path, const WeightFilter& wants_hessian) {
  auto g = GgufFile::open(path);
  CalibrationStats s;
  if (auto v = g->get_uint_opt("imatrix.chunk_count")) s.n_windows = *v;
  if (auto v = g->get_uint_opt("imatrix.chunk_size")) s.window_len = *v;
  for (const GgufTensorInfo& ti : g->tensors()) {
    const std::string& name = ti.view.name;
    std::string base;
    for (const char* suffix : {".in_sum2", ".sums"})
      if (has_suffix(name, suffix)) base = name.substr(0, name.size() - std::strlen(suffix));
    if (base.empty()) continue;
    const TensorView* counts = g->find_tensor(base + ".counts");
    if (!counts)
      fail(ErrorKind::Format, "{}: tensor '{}' has no matching '{}.counts'", path, name, base);
    if (ti.view.dtype != DType::F32 || counts->dtype != DType::F32)
      fail(ErrorKind::Format, "{}: imatrix tensors of '{}' must be F32", path, base);
    if (ti.view.shape.size() != 1 || counts->n_values() != 1)
      fail(ErrorKind::Unsupported,
           "{}: '{}' holds statistics for several experts; only dense models are supported", path,
           base);
    InputStats st;
    const auto sums = to_f32(ti.view);
    const float c = to_f32(*counts)[0];
    // At least one row (a count rounding to 0 would make every mean NaN), and small enough to
    // convert to uint64_t (found by fuzz_imatrix: 4.6e27 overflowed the cast).
    if (!(c >= 1 && c < 0x1p64f))
      fail(ErrorKind::Format, "{}: tensor '{}.counts' is {}, expected a count of rows (1 to 2^64)",
           path, base, c);
    check_sums(path, name, sums);
    st.count = static_cast<uint64_t>(c);
    st.sum_sq.assign(sums.begin(), sums.end());
    // Keep mean = sum / count exact even when the count was rounded to an integer.
    for (auto& v : st.sum_sq) v *= static_cast<double>(st.count) / c;
    if (const TensorView* am = g->find_tensor(base + ".in_absmax")) {
      st.absmax = to_f32(*am);
      check_sums(path, base + ".in_absmax", st.absmax);
    }
    const TensorView* h = g->find_tensor(base + ".in_hessian");
    if (h && (!wants_hessian || wants_hessian(base)))
      st.xtx = read_hessian(path, *h, st.sum_sq.size(), st.count);
    s.by_weight[base] = std::move(st);
  }
  if (s.by_weight.empty())
    fail(ErrorKind::Format, "{}: no imatrix tensors ('<weight>.in_sum2' + '<weight>.counts')",
         path);
  return s;
}

CalibrationStats read_legacy_dat(const std::string& path) {
  auto f = MappedFile::open(path);
  MappedReader c{*f};
  CalibrationStats s;
  const int32_t n = c.get<int32_t>("entry count");
  if (n <= 0) fail(ErrorKind::Format, "{}: entry count {} is not positive", path, n);
  for (int32_t e = 0; e < n; ++e) {
    const int32_t len = c.get<int32_t>("name length");
    if (len <= 0 || len > 4096)
      fail(ErrorKind::Format, "{}: entry {}: name length {} out of range", path, e, len);
    const std::string name(reinterpret_cast<const char*>(c.take(len, "entry name")), len);
    const int32_t ncall = c.get<int32_t>("call count"), nval = c.get<int32_t>("value count");
    if (ncall <= 0 || nval <= 0)
      fail(ErrorKind::Format, "{}: entry '{}': call count {} / value count {} must be positive",
           path, name, ncall, nval);
    const uint8_t* p = c.take(static_cast<size_t>(nval) * 4, "values");
    InputStats st;
    st.count = static_cast<uint64_t>(ncall);
    st.sum_sq.resize(nval);
    for (int32_t j = 0; j < nval; ++j) {
      float v;
      std::memcpy(&v, p + 4 * j, 4);
      st.sum_sq[j] = v;
    }
    check_sums(path, name, st.sum_sq);
    s.by_weight[name] = std::move(st);
  }
  if (c.pos + 4 <= f->size())
    s.n_windows = static_cast<uint64_t>(std::max(0, c.get<int32_t>("chunk count")));
  return s;
}

}  // namespace

void write_calibration_stats(const CalibrationStats& s, const std::string& path) {
  GgufWriter w;
  w.set("general.type", GgufValue::of_string("imatrix"));
  w.set("imatrix.chunk_count", GgufValue::of_u32(static_cast<uint32_t>(s.n_windows)));
  w.set("imatrix.chunk_size", GgufValue::of_u32(static_cast<uint32_t>(s.window_len)));
  w.set("lowbit.calibration.dataset", GgufValue::of_string(s.dataset));
  for (const auto& entry :
       s.by_weight) {  // not a structured binding: clang 14 cannot capture those
    const std::string& name = entry.first;
    const InputStats& st = entry.second;
    check_sums(path + " (being written)", name, st.sum_sq);
    const uint64_t cols = st.sum_sq.size();
    OutputTensor sums{{name + ".in_sum2", DType::F32, {cols}}, cols * 4, {}};
    sums.produce = [&st](std::vector<uint8_t>& b) {
      std::vector<float> v(st.sum_sq.begin(), st.sum_sq.end());
      b = from_f32(v.data(), v.size(), DType::F32);
    };
    OutputTensor counts{{name + ".counts", DType::F32, {1}}, 4, {}};
    counts.produce = [&st](std::vector<uint8_t>& b) {
      const float c = static_cast<float>(st.count);
      b = from_f32(&c, 1, DType::F32);
    };
    w.add_tensor(std::move(sums));
    w.add_tensor(std::move(counts));
    if (!st.absmax.empty()) {
      OutputTensor am{{name + ".in_absmax", DType::F32, {cols}}, cols * 4, {}};
      am.produce = [&st](std::vector<uint8_t>& b) {
        b = from_f32(st.absmax.data(), st.absmax.size(), DType::F32);
      };
      w.add_tensor(std::move(am));
    }
    if (!st.xtx.empty()) {  // mean x xᵀ, so that it stays in float range whatever the count
      OutputTensor h{{name + ".in_hessian", DType::F32, {cols, cols}}, cols * cols * 4, {}};
      h.produce = [&st](std::vector<uint8_t>& b) {
        const std::vector<double> mean = st.hessian();
        const std::vector<float> v(mean.begin(), mean.end());
        b = from_f32(v.data(), v.size(), DType::F32);
      };
      w.add_tensor(std::move(h));
    }
  }
  w.write(path);
}

CalibrationStats read_calibration_stats(const std::string& path,
                                        const WeightFilter& wants_hessian) {
  auto f = MappedFile::open(path);
  if (f->size() >= 4 && std::memcmp(f->data(), "GGUF", 4) == 0)
    return read_gguf_stats(path, wants_hessian);
  return read_legacy_dat(path);
}

}  // namespace lowbit
