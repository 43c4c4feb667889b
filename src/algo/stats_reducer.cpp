#include "algo/stats_reducer.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "core/parallel.h"
#include "lowbit/topology.h"

namespace lowbit {
namespace {

constexpr int kSumsTag = 11, kBandTag = 12, kGatherTag = 13;

// Elements in rows [0, r) of an n × n upper triangle.
size_t triangle_elements(size_t r, size_t n) {
  return r * n - r * (r - 1) / 2;
}

}  // namespace

std::pair<size_t, size_t> StatsReducer::band(size_t cols, size_t k, size_t n) {
  const size_t total = triangle_elements(cols, cols);
  auto boundary = [&](size_t part) {  // the first row at or past part/n of the elements
    size_t r = 0;
    while (r < cols && triangle_elements(r, cols) * n < total * part) ++r;
    return r;
  };
  return {boundary(k), boundary(k + 1)};
}

StatsReducer::StatsReducer(dist::Group& group, bool hessian, int n_threads)
    : group_(group),
      n_ranks_(static_cast<size_t>(group.size())),
      rank_(static_cast<size_t>(group.rank())),
      hessian_(hessian),
      n_threads_(resolve_threads(n_threads)),
      present_(n_ranks_, true),
      received_(n_ranks_) {}

void StatsReducer::begin_round(std::vector<bool> present) {
  present_ = std::move(present);
  last_group_.clear();
}

void StatsReducer::measure(const float* x, size_t rows, size_t cols) {
  Share& c = own_;
  c.rows = rows;
  c.sum_sq.assign(cols, 0.0);
  c.absmax.assign(cols, 0.0f);
  for (size_t r = 0; r < rows; ++r)
    for (size_t j = 0; j < cols; ++j) {
      const float v = x[r * cols + j];
      c.sum_sq[j] += static_cast<double>(v) * v;
      c.absmax[j] = std::max(c.absmax[j], std::fabs(v));
    }
  if (!hessian_) return;
  c.xtx.assign(cols * cols, 0.0f);
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<int>(cols), static_cast<int>(rows),
              1.0f, x, static_cast<int>(cols), 0.0f, c.xtx.data(), static_cast<int>(cols));
}

// Every rank sends its share's sums to rank 0 and each band of its x xᵀ to the band's rank,
// without waiting, then receives what it adds.
void StatsReducer::exchange(size_t cols) {
  if (n_ranks_ == 1) return;
  const size_t sum_bytes = cols * sizeof(double), max_bytes = cols * sizeof(float);
  if (present_[rank_]) {
    if (rank_ != 0) {
      group_.send_later(0, kSumsTag, &own_.rows, sizeof own_.rows);
      group_.send_later(0, kSumsTag, own_.sum_sq.data(), sum_bytes);
      group_.send_later(0, kSumsTag, own_.absmax.data(), max_bytes);
    }
    for (size_t j = 0; j < n_ranks_ && hessian_; ++j) {
      const auto [first, last] = band(cols, j, n_ranks_);
      if (j != rank_ && last > first)
        group_.send_later(static_cast<int>(j), kBandTag, own_.xtx.data() + first * cols,
                          (last - first) * cols * sizeof(float));
    }
  }
  const auto [first, last] = band(cols, rank_, n_ranks_);
  for (size_t j = 0; j < n_ranks_; ++j) {
    if (j == rank_ || !present_[j]) continue;
    Share& r = received_[j];
    const int from = static_cast<int>(j);
    if (rank_ == 0) {
      r.sum_sq.resize(cols);
      r.absmax.resize(cols);
      group_.recv(from, kSumsTag, &r.rows, sizeof r.rows);
      group_.recv(from, kSumsTag, r.sum_sq.data(), sum_bytes);
      group_.recv(from, kSumsTag, r.absmax.data(), max_bytes);
    }
    if (hessian_ && last > first) {
      r.xtx.resize((last - first) * cols);
      group_.recv(from, kBandTag, r.xtx.data(), r.xtx.size() * sizeof(float));
    }
  }
  group_.finish_sends();  // own_ is measured again for the next group
}

// This round's shares added to one weight's totals, window by window.
void StatsReducer::fold(Totals& t, size_t cols) {
  InputStats& s = t.stats;
  auto share = [&](size_t j) -> const Share& { return j == rank_ ? own_ : received_[j]; };
  if (rank_ == 0)
    for (size_t j = 0; j < n_ranks_; ++j) {
      if (!present_[j]) continue;
      const Share& c = share(j);
      for (size_t k = 0; k < cols; ++k) {
        s.sum_sq[k] += c.sum_sq[k];
        s.absmax[k] = std::max(s.absmax[k], c.absmax[k]);
      }
      s.count += c.rows;
    }
  if (!hessian_) return;
  const std::pair<size_t, size_t> rows = band(cols, rank_, n_ranks_);
  const size_t first = rows.first, last = rows.second;  // (lambdas below capture them)
  std::vector<const float*> sources;  // this band's rows of each window's x xᵀ, in order
  for (size_t j = 0; j < n_ranks_; ++j)
    if (present_[j])
      sources.push_back(j == rank_ ? own_.xtx.data() + first * cols : received_[j].xtx.data());
  const size_t n_rows = last - first;
  auto add_row = [&](size_t r) {  // r counts from the band's first row
    double* dst = t.band_xtx.data() + r * cols;
    for (const float* src : sources)
      for (size_t c = first + r; c < cols; ++c) dst[c] += src[r * cols + c];
  };
  // Rows paired from both ends of the band, so that every thread adds as many elements.
  parallel_for((n_rows + 1) / 2, n_threads_, [&](uint64_t p0, uint64_t p1) {
    for (uint64_t p = p0; p < p1; ++p) {
      add_row(p);
      if (n_rows - 1 - p != p) add_row(n_rows - 1 - p);
    }
  });
}

void StatsReducer::add(const std::string& name, const float* x, size_t rows, size_t cols) {
  Totals& t = totals_[name];
  if (t.stats.sum_sq.empty()) {
    t.stats.sum_sq.assign(cols, 0.0);
    t.stats.absmax.assign(cols, 0.0f);
    if (hessian_) {
      const auto [first, last] = band(cols, rank_, n_ranks_);
      t.band_xtx.assign((last - first) * cols, 0.0);
    }
  }
  if (const std::string key = input_group_key(name); key != last_group_) {
    measure(x, rows, cols);
    exchange(cols);
    last_group_ = key;
  }
  fold(t, cols);
}

CalibrationStats StatsReducer::finish(bool everywhere,
                                      const std::function<int(const std::string&)>& root_of) {
  CalibrationStats out;
  for (auto& [name, t] : totals_) {
    InputStats& s = t.stats;
    const size_t cols = s.sum_sq.size();
    const size_t root = root_of ? static_cast<size_t>(root_of(name)) : 0;
    if (root != 0 && rank_ == 0) {  // the small sums, added on rank 0
      group_.send(static_cast<int>(root), kSumsTag, &s.count, sizeof s.count);
      group_.send(static_cast<int>(root), kSumsTag, s.sum_sq.data(), cols * sizeof(double));
      group_.send(static_cast<int>(root), kSumsTag, s.absmax.data(), cols * sizeof(float));
    } else if (root != 0 && rank_ == root) {
      group_.recv(0, kSumsTag, &s.count, sizeof s.count);
      group_.recv(0, kSumsTag, s.sum_sq.data(), cols * sizeof(double));
      group_.recv(0, kSumsTag, s.absmax.data(), cols * sizeof(float));
    }
    if (hessian_) {  // the bands gathered on the root, the lower triangle mirrored
      if (rank_ != root) {
        const auto [first, last] = band(cols, rank_, n_ranks_);
        if (last > first)
          group_.send(static_cast<int>(root), kGatherTag, t.band_xtx.data(),
                      t.band_xtx.size() * sizeof(double));
      } else {
        s.xtx.assign(cols * cols, 0.0);
        for (size_t j = 0; j < n_ranks_; ++j) {
          const auto [first, last] = band(cols, j, n_ranks_);
          double* rows = s.xtx.data() + first * cols;
          if (j == rank_)
            std::copy(t.band_xtx.begin(), t.band_xtx.end(), rows);
          else if (last > first)
            group_.recv(static_cast<int>(j), kGatherTag, rows,
                        (last - first) * cols * sizeof(double));
        }
        for (size_t i = 0; i < cols; ++i)
          for (size_t j = i + 1; j < cols; ++j) s.xtx[j * cols + i] = s.xtx[i * cols + j];
      }
      std::vector<double>().swap(t.band_xtx);
    }
    if (everywhere && n_ranks_ > 1) {
      const int from = static_cast<int>(root);
      if (hessian_ && rank_ != root) s.xtx.resize(cols * cols);
      group_.broadcast(from, &s.count, sizeof s.count);
      group_.broadcast(from, s.sum_sq.data(), cols * sizeof(double));
      group_.broadcast(from, s.absmax.data(), cols * sizeof(float));
      if (hessian_) group_.broadcast(from, s.xtx.data(), s.xtx.size() * sizeof(double));
    } else if (rank_ != root) {  // the sums here are partial: the caller gets empty ones
      s = InputStats{};
    }
    out.by_weight[name] = std::move(s);
  }
  totals_.clear();
  return out;
}

}  // namespace lowbit
