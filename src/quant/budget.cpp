// The budget solver, recipe files and byte-size parsing of lowbit/mixed.h.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>

#include "lowbit/error.h"
#include "lowbit/file_io.h"
#include "lowbit/mixed.h"
#include "lowbit/quant.h"

namespace lowbit {

namespace {

uint64_t smallest_mix(const std::vector<MixTensor>& tensors) {
  uint64_t smallest = 0;
  for (const MixTensor& t : tensors) {
    if (t.options.empty())
      fail(ErrorKind::Argument, "budget: tensor '{}' has no type to choose from", t.name);
    uint64_t b = UINT64_MAX;
    for (const MixOption& o : t.options) b = std::min(b, o.bytes);
    smallest += b;
  }
  return smallest;
}

}  // namespace

void check_budget_fits(const std::vector<MixTensor>& tensors, uint64_t budget) {
  const uint64_t smallest = smallest_mix(tensors);
  if (smallest > budget)
    fail(ErrorKind::Argument, "budget of {} bytes is below the smallest possible mix ({} bytes)",
         budget, smallest);
}

MixSolution solve_budget(const std::vector<MixTensor>& tensors, uint64_t budget) {
  check_budget_fits(tensors, budget);
  // Bytes are counted in units, each option rounded up, so the rounded total bounds the true one.
  const uint64_t unit = std::max<uint64_t>(1, (budget + 199999) / 200000);
  const size_t cap = budget / unit;
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> best(cap + 1, 0.0), next(cap + 1);
  std::vector<std::vector<uint8_t>> pick(tensors.size(), std::vector<uint8_t>(cap + 1, 0));
  for (size_t t = 0; t < tensors.size(); ++t) {
    const auto& opts = tensors[t].options;
    if (opts.size() > 255)
      fail(ErrorKind::Argument, "budget: tensor '{}' has more than 255 options", tensors[t].name);
    for (size_t c = 0; c <= cap; ++c) {
      double v = inf;
      for (size_t k = 0; k < opts.size(); ++k) {
        const uint64_t u = (opts[k].bytes + unit - 1) / unit;
        if (u > c || best[c - u] == inf) continue;
        const double cand = best[c - u] + opts[k].loss;
        if (cand < v) v = cand, pick[t][c] = static_cast<uint8_t>(k);
      }
      next[c] = v;
    }
    best.swap(next);
  }
  if (best[cap] ==
      inf)  // only possible through rounding when the budget is nearly exactly the minimum
    fail(ErrorKind::Argument,
         "budget of {} bytes is too tight for the smallest mix ({} bytes) at {}-byte resolution",
         budget, smallest_mix(tensors), unit);
  MixSolution s;
  s.choice.resize(tensors.size());
  size_t c = cap;
  for (size_t t = tensors.size(); t-- > 0;) {
    const size_t k = pick[t][c];
    s.choice[t] = k;
    c -= (tensors[t].options[k].bytes + unit - 1) / unit;
    s.bytes += tensors[t].options[k].bytes;
    s.loss += tensors[t].options[k].loss;
  }
  return s;
}

namespace {

std::vector<double> ranks(const std::vector<double>& v) {
  std::vector<size_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (size_t i = 0; i < idx.size();) {  // ties share their average rank
    size_t j = i;
    while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]]) ++j;
    for (size_t k = i; k <= j; ++k) r[idx[k]] = (i + j) / 2.0;
    i = j + 1;
  }
  return r;
}

}  // namespace

double proxy_rank_correlation(const std::vector<MixTensor>& tensors) {
  std::vector<double> proxy, measured;
  for (const MixTensor& t : tensors)
    if (t.options.size() > 1)
      for (const MixOption& o : t.options)
        if (o.measured >= 0) proxy.push_back(o.proxy), measured.push_back(o.measured);
  if (proxy.size() < 3) return NAN;
  const auto a = ranks(proxy), b = ranks(measured);
  const double mean = (a.size() - 1) / 2.0;
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    sab += (a[i] - mean) * (b[i] - mean);
    saa += (a[i] - mean) * (a[i] - mean);
    sbb += (b[i] - mean) * (b[i] - mean);
  }
  return sab / std::sqrt(saa * sbb);
}

void write_recipe(const std::string& path, const std::vector<MixTensor>& tensors,
                  const MixSolution& s, uint64_t budget) {
  nlohmann::json list = nlohmann::json::array();
  for (size_t t = 0; t < tensors.size(); ++t) {
    const MixOption& o = tensors[t].options[s.choice[t]];
    list.push_back({{"name", tensors[t].name},
                    {"type", dtype_name(o.type)},
                    {"bytes", o.bytes},
                    {"loss", o.loss},
                    {"fixed", tensors[t].options.size() == 1}});
  }
  const nlohmann::json j = {{"format", "lowbit-recipe"}, {"version", 1},
                            {"budget_bytes", budget},    {"total_bytes", s.bytes},
                            {"estimated_kld", s.loss},   {"tensors", list}};
  write_file_atomic(path, j.dump(1) + "\n");
}

std::map<std::string, DType> read_recipe(const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::Format, "{}: not a JSON recipe ({})", path, e.what());
  }
  // Not j.value("format", ""): it throws a json type_error when "format" is not a string
  // (found by fuzz_recipe).
  if (!j.is_object() || !j.contains("format") || j["format"] != "lowbit-recipe" ||
      !j.contains("tensors") || !j["tensors"].is_array())
    fail(ErrorKind::Format,
         "{}: not a lowbit recipe (expected \"format\": \"lowbit-recipe\" and a \"tensors\" list)",
         path);
  std::map<std::string, DType> out;
  for (size_t i = 0; i < j["tensors"].size(); ++i) {
    const auto& e = j["tensors"][i];
    if (!e.is_object() || !e.contains("name") || !e["name"].is_string() || !e.contains("type") ||
        !e["type"].is_string())
      fail(ErrorKind::Format, "{}: tensors[{}] needs a \"name\" and a \"type\" string", path, i);
    const auto t = dtype_from_name(e["type"].get<std::string>());
    if (!t || !can_quantize_to(*t))
      fail(ErrorKind::Format, "{}: tensors[{}] ('{}'): '{}' is not a type lowbit can write", path,
           i, e["name"].get<std::string>(), e["type"].get<std::string>());
    out[e["name"].get<std::string>()] = *t;
  }
  return out;
}

uint64_t parse_byte_size(const std::string& text) {
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(text, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  std::string unit = text.substr(pos);
  for (char& ch : unit) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  static const std::map<std::string, double> kUnits = {
      {"", 1},     {"B", 1},        {"KB", 1e3},        {"MB", 1e6},
      {"GB", 1e9}, {"KIB", 1024.0}, {"MIB", 1048576.0}, {"GIB", 1073741824.0}};
  auto it = kUnits.find(unit);
  if (pos == 0 || it == kUnits.end() || !(v > 0))
    fail(ErrorKind::Argument,
         "size '{}': expected a positive number with an optional B, KB, MB, GB, KiB, MiB or GiB "
         "suffix",
         text);
  return static_cast<uint64_t>(v * it->second);
}

}  // namespace lowbit
