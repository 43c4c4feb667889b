#include "lowbit/engine.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_map>

#include "core/blas.h"
#include "core/parallel.h"
#include "core/thread_pool.h"
#include "lowbit/error.h"
#include "lowbit/kernels.h"
#include "lowbit/lowrank.h"
#include "lowbit/quant.h"
#include "lowbit/rotation.h"

namespace lowbit {
namespace {

// RMSNorm as llama.cpp computes it: sum of squares in double, scale in float.
void rms_norm(const float* x, const float* w, float* y, size_t n_rows, size_t d, float eps) {
  for (size_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * d;
    double sum = 0;
    for (size_t i = 0; i < d; ++i) sum += static_cast<double>(xr[i]) * xr[i];
    const float scale = 1.0f / std::sqrt(static_cast<float>(sum / d) + eps);
    float* yr = y + r * d;
    for (size_t i = 0; i < d; ++i) yr[i] = xr[i] * scale * w[i];
  }
}

// Rotates each head of x [n, n_heads * hd] by its token's position.
void apply_rope(float* x, size_t n, uint32_t n_heads, uint32_t hd, size_t pos0,
                const std::vector<double>& inv_freq, RopeLayout layout) {
  const uint32_t half = hd / 2;
  for (size_t t = 0; t < n; ++t) {
    const double pos = static_cast<double>(pos0 + t);
    for (uint32_t i = 0; i < half; ++i) {
      const double theta = pos * inv_freq[i];
      const float c = static_cast<float>(std::cos(theta)), s = static_cast<float>(std::sin(theta));
      for (uint32_t h = 0; h < n_heads; ++h) {
        float* head = x + (t * n_heads + h) * hd;
        float* a = layout == RopeLayout::Halves ? head + i : head + 2 * i;
        float* b = layout == RopeLayout::Halves ? head + i + half : head + 2 * i + 1;
        const float x0 = *a, x1 = *b;
        *a = x0 * c - x1 * s;
        *b = x0 * s + x1 * c;
      }
    }
  }
}

std::vector<float> vector_of(const Model& m, const std::string& name) {
  return to_f32(m.tensor(name));
}

uint64_t row_bytes_of(DType t, uint64_t row_len) {
  return row_len / traits(t).block_size * traits(t).type_size;
}

// Rows of the KV cache in any is_kv_cache_type: stored in that type, read back as f32.
struct CacheRows {
  DType type = DType::F32;
  size_t row_len = 0, row_bytes = 0;
  std::vector<uint8_t> bytes;  // [n_ctx, row_bytes]

  void init(DType t, size_t n_ctx, size_t len) {
    type = t, row_len = len, row_bytes = row_bytes_of(t, len);
    bytes.assign(n_ctx * row_bytes, 0);
  }
  void store(size_t pos, const float* x, size_t n) {
    uint8_t* dst = bytes.data() + pos * row_bytes;
    if (type == DType::F32) std::memcpy(dst, x, n * row_bytes);
    else quantize_rows(type, x, n, row_len, nullptr, dst);
  }
  // Rows [0, n) as f32: the cache itself when it is F32, else decoded into scratch.
  const float* rows(size_t n, std::vector<float>& scratch) const {
    if (type == DType::F32) return reinterpret_cast<const float*>(bytes.data());
    scratch.resize(n * row_len);
    dequantize_values(type, bytes.data(), n * row_len, scratch.data());
    return scratch.data();
  }
};

}  // namespace

constexpr DType kKvCacheTypes[] = {DType::F32,  DType::F16,    DType::Q8_0, DType::Q4_0,
                                    DType::Q4_1, DType::IQ4_NL, DType::Q5_0, DType::Q5_1};

bool is_kv_cache_type(DType t) {
  return std::find(std::begin(kKvCacheTypes), std::end(kKvCacheTypes), t) !=
         std::end(kKvCacheTypes);
}

namespace {

std::string cache_type_word(DType t) {  // as the flags take it: "q4_0"
  std::string name = dtype_name(t);
  for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return name;
}

}  // namespace

std::string kv_cache_type_names() {
  std::string out;
  for (DType t : kKvCacheTypes) out += (out.empty() ? "" : ", ") + cache_type_word(t);
  return out;
}

void linear_forward(const TensorView& w, const float* x, size_t n, float* y, int n_threads) {
  const size_t rows = w.shape[0], cols = w.row_len();
  if (w.dtype == DType::F32)
    return blas::sgemm(n_threads, CblasNoTrans, CblasTrans, n, rows, cols, 1.0f, x, cols,
                       reinterpret_cast<const float*>(w.data), cols, 0.0f, y, rows);
  // Dequantize ~2 MB of rows at a time and multiply them; y columns [r0, r0 + tile). The
  // tiles depend on the shape only, so the sums do not depend on the thread count.
  const size_t tile_rows =
      std::max<size_t>(1, std::min<size_t>(rows, (1u << 19) / std::max<size_t>(cols, 1)));
  blas::make_single_threaded();
  parallel_for((rows + tile_rows - 1) / tile_rows, n_threads, [&](uint64_t t0, uint64_t t1) {
    thread_local std::vector<float> tile;
    tile.resize(tile_rows * cols);
    for (uint64_t t = t0; t < t1; ++t) {
      const size_t r0 = t * tile_rows, nr = std::min(tile_rows, rows - r0);
      dequantize_rows(w, r0, nr, tile.data());
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, nr, cols, 1.0f, x, cols, tile.data(),
                  cols, 0.0f, y + r0, rows);
    }
  });
}

uint64_t weight_bytes_per_token(const Model& m) {
  uint64_t total = 0;
  for (const TensorView& t : m.tensors)
    if (t.shape.size() == 2 && (t.name != "token_embd.weight" || m.config.tied_embeddings)) {
      auto q8 = m.int8_weights.find(t.name);  // W8A8: the engine reads the int8 form
      total += q8 == m.int8_weights.end()
                   ? t.nbytes
                   : q8->second.q.size() + q8->second.scale.size() * sizeof(float);
    }
  return total;
}

struct Engine::Impl {
  struct Layer {
    const TensorView *wq, *wk, *wv, *wo, *wgate, *wup, *wdown;
    std::vector<float> attn_norm, ffn_norm, bq, bk, bv, q_norm, k_norm;
    std::string prefix;
    CacheRows k_cache, v_cache;  // [n_ctx, kv_dim]
  };
  std::vector<Layer> layers;
  std::vector<float> output_norm;
  const TensorView* embd;
  const TensorView* output;
  std::vector<double> inv_freq;
  // scratch, sized for the largest batch seen
  std::vector<float> x, h, q, k, v, attn, scores, gate, up, ffn;  // x: eval's residual stream
  std::vector<float> k_rows, v_rows;  // decoded cache rows (quantized caches)
  std::vector<float> acts_rounded;     // EngineOptions::act_bits: the rounded linear input
  // Low-rank branches by weight name (lowbit/lowrank.h): A [rank, in], B [out, rank] in f32.
  struct LowRank {
    uint32_t rank = 0;
    std::vector<float> a, b;
  };
  std::unordered_map<std::string, LowRank> lowrank;
  std::vector<float> lowrank_t;  // A·x [n, rank]
  // ActivationRounding::static_ranges: each block linear's input range (ModelConfig::act_ranges)
  std::unordered_map<std::string, float> act_range;  // by weight name

  // The Hadamard transform of `rows` rows of `len` values; on the fast path the rows are
  // split over the pool (each row is transformed alone, so the values do not change).
  void hadamard(float* x, size_t rows, uint32_t len) {
    for_chunks(rows, 1,
               [&](size_t r0, size_t r1) { kernels::hadamard_rows(x + r0 * len, r1 - r0, len); });
  }
  // fn(i0, i1) over [0, n) in one piece per pool thread, each at least `min` long (one piece
  // on the reference path, where there is no pool).
  template <class Fn>
  void for_chunks(size_t n, size_t min, Fn fn) {
    const size_t parts =
        pool ? std::clamp<size_t>(n / std::max<size_t>(min, 1), 1, pool->size()) : 1;
    if (parts == 1) return fn(0, n);
    const size_t per = (n + parts - 1) / parts;
    auto task = [&](size_t i) {
      if (i * per < n) fn(i * per, std::min(n, (i + 1) * per));
    };
    pool->run(parts, task);
  }
  std::unique_ptr<ThreadPool> pool;   // fast path only
  kernels::QuantizedActs acts;        // fast path: the current linear layer's input
  std::vector<kernels::ActRow> act_rows;  // ... one view per token
  std::vector<int8_t> acts_i8;        // W8A8: the input as int8 [n, cols] ...
  std::vector<float> acts_i8_scale;   // ... with one scale per token [n]
  std::vector<float> acts_i8_values;  // W8A8 reference: the rounded input as f32 [n, cols]
  std::vector<int32_t> sums_i32;      // W8A8 fast: integer sums [n, rows]
  std::unordered_map<const uint8_t*, kernels::PackedRows> packed;  // by weight data
  // How `acts` holds its input: 8-bit codes per block (bits 0), or ActivationRounding's
  // rounding as codes (kernels::quantize_acts_rounded; range: the static range, or 0 for
  // per-token steps).
  struct ActCodes {
    uint32_t block = 0;
    int bits = 0;
    float clip = 0, range = 0;
    bool operator==(const ActCodes&) const = default;
  };
  // `acts` holds x [n, cols] quantized as acts_codes while acts_source == x: q, k and v (gate
  // and up) share one input. forward_layer and head clear it before every new input.
  const float* acts_source = nullptr;
  size_t acts_tokens = 0;
  ActCodes acts_codes;
  // x [n, cols] into acts, token rows over the pool (at least 16 per thread).
  void quantize_rows(const float* x, size_t n, size_t cols, uint32_t block) {
    kernels::resize_acts(acts, n, cols, block);
    for_chunks(n, 16, [&](size_t r0, size_t r1) { kernels::quantize_act_rows(x, r0, r1, acts); });
  }
  void quantize_input(const float* x, size_t n, size_t cols, const ActCodes& codes) {
    if (acts_source == x && acts_tokens == n && acts.row_len == cols && acts_codes == codes) return;
    if (codes.bits)
      kernels::quantize_acts_rounded(x, n, cols, codes.block, codes.bits, codes.clip,
                                     codes.range > 0 ? &codes.range : nullptr, acts);
    else
      quantize_rows(x, n, cols, codes.block);
    acts_source = x, acts_tokens = n, acts_codes = codes;
  }
  // x [n, cols] rounded as ActivationRounding says, into acts_rounded (range: the static
  // range, or nullptr for per-token steps).
  const float* round_input(const float* x, size_t n, size_t cols, const ActivationRounding& o,
                           const float* range) {
    acts_rounded.assign(x, x + n * cols);
    if (range)
      kernels::round_acts_to_range(acts_rounded.data(), acts_rounded.size(), o.act_bits, o.act_clip,
                                   *range);
    else
      kernels::round_acts_per_token(acts_rounded.data(), n, cols, o.act_bits, o.act_clip);
    return acts_rounded.data();
  }
};

Engine::Engine(const Model& m, EngineOptions opts)
    : model_(m), opts_(opts), impl_(std::make_unique<Impl>()) {
  const ModelConfig& c = m.config;
  opts.n_threads = opts_.n_threads = resolve_threads(opts.n_threads);
  n_ctx_ = opts.n_ctx ? opts.n_ctx : c.n_ctx;
  // The KV cache holds n_ctx_ positions: sized by the context asked for, within the model's.
  if (c.n_ctx && n_ctx_ > c.n_ctx)
    fail(ErrorKind::Argument, "context of {} tokens: the model has {} positions (its maximum)",
         n_ctx_, c.n_ctx);
  blas::make_single_threaded();  // (core/blas.h: results independent of the thread count)
  Impl& s = *impl_;
  check_rounding(opts.rounding, c);
  if (opts.fast) s.pool = std::make_unique<ThreadPool>(std::max(1, opts.n_threads));
  s.embd = &m.tensor("token_embd.weight");
  s.output = c.tied_embeddings ? s.embd : &m.tensor("output.weight");
  validate_lowrank_tensors(m);  // (shapes: a model edited after loading)
  for (const TensorView& t : m.tensors)
    if (is_lowrank_a(t.name)) {
      const std::string weight = lowrank_weight(t.name);
      s.lowrank[weight] = {static_cast<uint32_t>(t.shape[0]), to_f32(t),
                           to_f32(m.tensor(lowrank_b_name(weight)))};
    }
  s.output_norm = vector_of(m, "output_norm.weight");
  if (opts.rounding.static_ranges && c.act_ranges.size() != size_t(kActRangeSites) * c.n_layer)
    fail(ErrorKind::Argument,
         "{}: static activation ranges: the model has none (quantize --method qat --act-ranges "
         "static trains them)",
         m.source);
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    Impl::Layer L;
    L.prefix = "blk." + std::to_string(l) + ".";
    auto w = [&](const char* n) { return &m.tensor(L.prefix + n); };
    L.wq = w("attn_q.weight");
    L.wk = w("attn_k.weight");
    L.wv = w("attn_v.weight");
    L.wo = w("attn_output.weight");
    L.wgate = w("ffn_gate.weight");
    L.wup = w("ffn_up.weight");
    L.wdown = w("ffn_down.weight");
    L.attn_norm = vector_of(m, L.prefix + "attn_norm.weight");
    L.ffn_norm = vector_of(m, L.prefix + "ffn_norm.weight");
    if (c.attn_bias) {
      L.bq = vector_of(m, L.prefix + "attn_q.bias");
      L.bk = vector_of(m, L.prefix + "attn_k.bias");
      L.bv = vector_of(m, L.prefix + "attn_v.bias");
    }
    if (c.qk_norm) {
      L.q_norm = vector_of(m, L.prefix + "attn_q_norm.weight");
      L.k_norm = vector_of(m, L.prefix + "attn_k_norm.weight");
    }
    if (opts.rounding.static_ranges) {
      const TensorView* linears[7] = {L.wq, L.wk, L.wv, L.wo, L.wgate, L.wup, L.wdown};
      for (int i = 0; i < 7; ++i)
        s.act_range[linears[i]->name] = c.act_ranges[l * kActRangeSites + act_range_site(i)];
    }
    L.k_cache.init(opts.rounding.cache_type_k, n_ctx_, c.kv_dim());
    L.v_cache.init(opts.rounding.cache_type_v, n_ctx_, c.kv_dim());
    s.layers.push_back(std::move(L));
  }
  s.inv_freq = rope_frequencies(m);
}

DType kv_cache_type(const std::string& name, const std::string& what) {
  const auto t = dtype_from_name(name);
  if (!t || !is_kv_cache_type(*t))
    fail(ErrorKind::Argument, "{} {}: use {}", what, name, kv_cache_type_names());
  return *t;
}

std::string rounding_label(const ActivationRounding& r) {
  std::string out;
  auto add = [&](const std::string& item) { out += (out.empty() ? "" : " ") + item; };
  if (r.act_bits) add(fmt::format("act-bits={}", r.act_bits));
  if (r.act_bits && r.act_clip != ActivationRounding{}.act_clip)
    add(fmt::format("act-clip={}", r.act_clip));
  if (r.act_bits && r.static_ranges) add("act-ranges=static");
  for (const auto& [name, t] :
       {std::pair{"cache-type-k", r.cache_type_k}, std::pair{"cache-type-v", r.cache_type_v}})
    if (t != DType::F32) add(fmt::format("{}={}", name, cache_type_word(t)));
  if (r.rotate_kv) add("rotate-kv");
  return out;
}

void check_rounding(const ActivationRounding& r, const ModelConfig& c) {
  for (DType t : {r.cache_type_k, r.cache_type_v}) {
    if (!is_kv_cache_type(t))
      fail(ErrorKind::Argument, "KV cache type {}: use {}", dtype_name(t), kv_cache_type_names());
    if (c.kv_dim() % traits(t).block_size)
      fail(ErrorKind::Argument, "KV cache type {}: rows of {} values are not a multiple of {}",
           dtype_name(t), c.kv_dim(), traits(t).block_size);
  }
  if (r.act_bits != 0 && (r.act_bits < 2 || r.act_bits > 8))
    fail(ErrorKind::Argument, "activation bits {}: 0 (off) or 2..8", r.act_bits);
  if (r.static_ranges && !r.act_bits)
    fail(ErrorKind::Argument, "static activation ranges round activations: give act-bits too");
  if (!(r.act_clip > 0 && r.act_clip <= 1))
    fail(ErrorKind::Argument, "activation clipping ratio {}: must be in (0, 1]", r.act_clip);
  if (r.rotate_kv && !has_hadamard(c.head_dim))
    fail(ErrorKind::Argument, "rotating the KV cache: no Hadamard transform of head_dim {}",
         c.head_dim);
}

std::vector<double> rope_frequencies(const Model& m) {
  ModelConfig base = m.config;
  if (!m.rope_freq_factors.empty())
    base.rope_scaling = {};  // the factors already carry the scaling
  const auto f = rope_inv_freq(base);
  std::vector<double> out;
  for (size_t i = 0; i < f.size(); ++i)
    out.push_back(static_cast<double>(f[i]) /
                  (m.rope_freq_factors.empty() ? 1.0 : m.rope_freq_factors[i]));
  return out;
}

Engine::~Engine() = default;

void Engine::reserve(size_t n) {
  const ModelConfig& c = model_.config;
  Impl& s = *impl_;
  const size_t D = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff;
  s.h.resize(n * D);
  s.q.resize(n * Q);
  s.k.resize(n * KV);
  s.v.resize(n * KV);
  s.attn.resize(n * Q);
  if (!opts_.fast) s.scores.resize(n * (n_past_ + n));  // the fast path keeps per-thread rows
  s.gate.resize(n * F);
  s.up.resize(n * F);
  s.ffn.resize(n * D);
}

// The fast path: the input quantized once per call to the weight's activation blocks, then
// tiles of 16 weight rows (a few KB, kept in L1/L2 while every token of the batch passes
// over them) handed out to the pool's threads.
void Engine::linear(const TensorView& w, const float* x, size_t n, float* y) {
  linear_main(w, x, n, y);
  Impl& s = *impl_;
  if (s.lowrank.empty()) return;
  auto it = s.lowrank.find(w.name);
  if (it == s.lowrank.end()) return;
  // t [n, r] = x [n, in] · Aᵀ, then y [n, out] += t · Bᵀ.
  const Impl::LowRank& br = it->second;
  const size_t in = w.row_len(), out = w.shape[0];
  s.lowrank_t.resize(n * br.rank);
  const int threads = n >= 8 ? opts_.n_threads : 1;  // (a thread start costs more below)
  blas::sgemm(threads, CblasNoTrans, CblasTrans, n, br.rank, in, 1.0f, x, in, br.a.data(), in, 0.0f,
              s.lowrank_t.data(), br.rank);
  blas::sgemm(threads, CblasNoTrans, CblasTrans, n, out, br.rank, 1.0f, s.lowrank_t.data(), br.rank,
              br.b.data(), br.rank, 1.0f, y, out);
}

void Engine::linear_main(const TensorView& w, const float* x, size_t n, float* y) {
  Impl& s = *impl_;
  const size_t rows = w.shape[0], cols = w.row_len(), row_bytes = w.nbytes / rows;
  const ActivationRounding& o = opts_.rounding;
  const bool round = o.act_bits && &w != s.output;
  const float* range = round && o.static_ranges ? &s.act_range.at(w.name) : nullptr;
  if (!model_.int8_weights.empty()) {
    // The int8 form belongs to the model's own view: not to one swapped in by replace_weight.
    auto it = model_.int8_weights.find(w.name);
    if (it != model_.int8_weights.end() && it->second.rows == rows && it->second.cols == cols &&
        model_.find(w.name) == &w)
      return linear_w8a8(it->second, w, round ? s.round_input(x, n, cols, o, range) : x, n, y);
  }
  const bool packed = opts_.fast && opts_.packed_batch && n >= opts_.packed_batch &&
                      kernels::has_packed_kernel(w.dtype) && kernels::packed_gemm_is_fast();
  // Batches through BLAS on dequantized tiles: for float weights from 8 tokens (converting in
  // registers per token loses), for quantized ones from opts_.blas_batch (see EngineOptions).
  const bool is_float = traits(w.dtype).is_float;
  const bool use_blas = is_float ? n >= 8 : opts_.blas_batch > 0 && n >= opts_.blas_batch;
  const bool dots = !packed && opts_.fast && kernels::has_kernel(w.dtype) && !use_blas;
  // Rounded activations reach the integer kernels as their codes (W4A4: int4 × int4 products
  // summed exactly), everything else as the rounded values in f32.
  Impl::ActCodes codes{(packed || dots) && !is_float ? kernels::act_block(w.dtype) : 0};
  if (round && (packed || (dots && !is_float)) && (!range || *range > 0))
    codes.bits = o.act_bits, codes.clip = o.act_clip, codes.range = range ? *range : 0;
  else if (round)
    x = s.round_input(x, n, cols, o, range);
  if (!packed && !dots) return linear_forward(w, x, n, y, opts_.n_threads);
  if (codes.block) s.quantize_input(x, n, cols, codes);
  if (packed) return linear_packed(w, y);
  s.act_rows.resize(n);
  for (size_t t = 0; t < n; ++t) {
    if (codes.block)
      s.act_rows[t] = kernels::act_row(s.acts, t);
    else s.act_rows[t] = {nullptr, nullptr, nullptr, x + t * cols};
  }
  auto rows_task = [&](size_t r0, size_t r1) {
    kernels::dot_rows_multi(w.dtype, w.data + r0 * row_bytes, row_bytes, r1 - r0, cols,
                            s.act_rows.data(), n, y + r0, rows);
  };
  // One token: each thread streams its own contiguous share of the rows in claims of 64 to
  // 512 rows (64-row tiles handed out in turn made each thread jump every 139 KB of Q8_0 and
  // start each tile cold), and the first one done takes 64-row pieces from the back of the
  // other's share.
  if (n == 1) return s.pool->run_shares(rows, 64, rows_task);
  constexpr size_t kTile = 16;
  auto task = [&](size_t tile) { rows_task(tile * kTile, std::min(rows, (tile + 1) * kTile)); };
  s.pool->run((rows + kTile - 1) / kTile, task);
}

void Engine::linear_packed(const TensorView& w, float* y) {
  Impl& s = *impl_;
  const size_t rows = w.shape[0], cols = w.row_len();
  auto it = s.packed.find(w.data);
  if (it != s.packed.end() &&
      (it->second.type != w.dtype || it->second.rows != rows || it->second.cols != cols))
    s.packed.erase(it), it = s.packed.end();  // other bytes now live at that address
  if (it == s.packed.end())
    it = s.packed.emplace(w.data, kernels::pack_rows(w.dtype, w.data, w.nbytes / rows, rows, cols))
             .first;
  const kernels::PackedRows& p = it->second;
  // Two panels (32 rows, the kernel's widest tile) per task: their records stay in L1/L2
  // while every token passes.
  auto task = [&](size_t i) {
    kernels::packed_gemm(p, 2 * i, std::min(2 * i + 2, p.n_panels()), s.acts, y, rows);
  };
  s.pool->run((p.n_panels() + 1) / 2, task);
}

void Engine::linear_w8a8(const Int8Weight& q, const TensorView& w, const float* x, size_t n,
                         float* y) {
  Impl& s = *impl_;
  const size_t rows = q.rows, cols = q.cols;
  s.acts_i8.resize(n * cols);
  s.acts_i8_scale.resize(n);
  kernels::quantize_acts_i8(x, n, cols, q.input_scale, s.acts_i8.data(), s.acts_i8_scale.data());
  if (!opts_.fast) {
    s.acts_i8_values.resize(n * cols);
    for (size_t t = 0; t < n; ++t)
      for (size_t i = 0; i < cols; ++i)
        s.acts_i8_values[t * cols + i] = s.acts_i8_scale[t] * s.acts_i8[t * cols + i];
    return linear_forward(w, s.acts_i8_values.data(), n, y, opts_.n_threads);
  }
  s.sums_i32.resize(n * rows);
  constexpr size_t kTile = 32;
  auto task = [&](size_t tile) {
    const size_t r0 = tile * kTile, nr = std::min(kTile, rows - r0);
    kernels::gemm_i8(q.q.data() + r0 * cols, nr, cols, s.acts_i8.data(), n, s.sums_i32.data() + r0,
                     rows);
    for (size_t t = 0; t < n; ++t)
      for (size_t r = r0; r < r0 + nr; ++r)
        y[t * rows + r] =
            static_cast<float>(s.sums_i32[t * rows + r]) * (s.acts_i8_scale[t] * q.scale[r]);
  };
  s.pool->run((rows + kTile - 1) / kTile, task);
}

void Engine::embed(const int32_t* tokens, size_t n, float* x) const {
  const ModelConfig& c = model_.config;
  for (size_t t = 0; t < n; ++t) {
    if (tokens[t] < 0 || static_cast<uint32_t>(tokens[t]) >= c.n_vocab)
      fail(ErrorKind::Argument, "eval: token id {} is outside the vocabulary of {}", tokens[t],
           c.n_vocab);
    dequantize_rows(*impl_->embd, tokens[t], 1, &x[t * c.n_embd]);
  }
}

void Engine::replace_weight(const std::string& name, const TensorView* w) {
  std::vector<const TensorView**> slots = {&impl_->embd,
                                           &impl_->output};  // the same tensor when tied
  for (auto& L : impl_->layers)
    for (const TensorView** slot : {&L.wq, &L.wk, &L.wv, &L.wo, &L.wgate, &L.wup, &L.wdown})
      slots.push_back(slot);
  bool found = false;
  for (const TensorView** slot : slots) {
    if ((*slot)->name != name) continue;
    if (w->shape != (*slot)->shape)
      fail(ErrorKind::Argument, "replace_weight: '{}' is {}, the replacement {}", name,
           shape_string((*slot)->shape), shape_string(w->shape));
    impl_->packed.clear();  // callers may have rewritten the old view already: drop every panel
    *slot = w;
    found = true;
  }
  if (!found) fail(ErrorKind::Argument, "replace_weight: the model has no weight '{}'", name);
}

void Engine::set_norm(const std::string& name, std::vector<float> w) {
  for (auto& L : impl_->layers)
    for (std::vector<float>* norm : {&L.attn_norm, &L.ffn_norm})
      if (name == L.prefix + (norm == &L.attn_norm ? "attn_norm.weight" : "ffn_norm.weight")) {
        if (w.size() != norm->size())
          fail(ErrorKind::Argument, "set_norm: '{}' has {} values, got {}", name, norm->size(),
               w.size());
        *norm = std::move(w);
        return;
      }
  fail(ErrorKind::Argument, "set_norm: the model has no layer norm '{}'", name);
}

void Engine::forward_layer(uint32_t layer, float* x, size_t n) {
  const ModelConfig& c = model_.config;
  Impl& s = *impl_;
  if (layer >= s.layers.size())
    fail(ErrorKind::Argument, "forward_layer: layer {} of {}", layer, s.layers.size());
  if (n_past_ + n > n_ctx_)
    fail(ErrorKind::Argument, "eval: {} + {} tokens exceed the context of {}", n_past_, n, n_ctx_);
  reserve(n);
  const size_t D = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff, hd = c.head_dim;
  const size_t T = n_past_ + n;  // keys visible to the last token
  auto hook = [&](const TensorView* w, const float* in, size_t in_dim) {
    if (hook_) hook_(w->name, in, n, in_dim);
  };
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const uint32_t group = c.n_head / c.n_head_kv;
  Impl::Layer& L = s.layers[layer];
  // attention block
  s.acts_source = nullptr;
  // Row-wise steps over the pool in chunks of tokens (one chunk alone when n is small or on
  // the reference path): splitting by rows leaves every value as it is.
  s.for_chunks(n, 8, [&](size_t r0, size_t r1) {
    rms_norm(x + r0 * D, L.attn_norm.data(), s.h.data() + r0 * D, r1 - r0, D, c.norm_eps);
  });
  for (const TensorView* w : {L.wq, L.wk, L.wv}) hook(w, s.h.data(), D);
  linear(*L.wq, s.h.data(), n, s.q.data());
  linear(*L.wk, s.h.data(), n, s.k.data());
  linear(*L.wv, s.h.data(), n, s.v.data());
  if (c.attn_bias)
    for (size_t t = 0; t < n; ++t) {
      for (size_t i = 0; i < Q; ++i) s.q[t * Q + i] += L.bq[i];
      for (size_t i = 0; i < KV; ++i) s.k[t * KV + i] += L.bk[i];
      for (size_t i = 0; i < KV; ++i) s.v[t * KV + i] += L.bv[i];
    }
  if (c.qk_norm) {
    rms_norm(s.q.data(), L.q_norm.data(), s.q.data(), n * c.n_head, hd, c.norm_eps);
    rms_norm(s.k.data(), L.k_norm.data(), s.k.data(), n * c.n_head_kv, hd, c.norm_eps);
  }
  s.for_chunks(n, 8, [&](size_t t0, size_t t1) {
    apply_rope(s.q.data() + t0 * Q, t1 - t0, c.n_head, hd, n_past_ + t0, s.inv_freq,
               model_.rope_layout);
    apply_rope(s.k.data() + t0 * KV, t1 - t0, c.n_head_kv, hd, n_past_ + t0, s.inv_freq,
               model_.rope_layout);
  });
  if (opts_.rounding
          .rotate_kv) {  // q·k per head is unchanged: both rotated by the same orthogonal H
    s.hadamard(s.q.data(), n * c.n_head, hd);
    s.hadamard(s.k.data(), n * c.n_head_kv, hd);
  }
  L.k_cache.store(n_past_, s.k.data(), n);
  L.v_cache.store(n_past_, s.v.data(), n);
  const float* keys = L.k_cache.rows(T, s.k_rows);
  const float* values = L.v_cache.rows(T, s.v_rows);
  if (opts_.fast) {
    // Heads are independent: one task each. Below packed_batch tokens, one query at a time
    // over its visible keys: the same BLAS calls on the same data as when the token comes
    // alone, so generation equals such a batch exactly. (Batched products sum in another
    // order; the int8 activation rounding of the next linear can turn that last-bit
    // difference into a code step.) From packed_batch on, where the panels already sum in
    // their own order, two matrix products per head as in the reference path.
    const bool batched =
        opts_.packed_batch && n >= opts_.packed_batch && kernels::packed_gemm_is_fast();
    auto head_task = [&](size_t head) {
      thread_local std::vector<float> rows;
      const size_t kvh = head / group;
      const float* k_head = keys + kvh * hd;
      const float* v_head = values + kvh * hd;
      float* out = s.attn.data() + head * hd;
      if (batched) {
        // Queries in chunks of kChunk: chunk [t0, t1) sees keys [0, n_past + t1) only, so
        // the causal half of the n × T products is mostly skipped.
        constexpr size_t kChunk = 64;
        rows.resize(kChunk * T);
        for (size_t t0 = 0; t0 < n; t0 += kChunk) {
          const size_t m = std::min(kChunk, n - t0), keys_seen = n_past_ + t0 + m;
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, keys_seen, hd, scale,
                      s.q.data() + t0 * Q + head * hd, Q, k_head, KV, 0.0f, rows.data(), keys_seen);
          for (size_t t = 0; t < m; ++t) {
            const size_t visible = n_past_ + t0 + t + 1;
            float* row = rows.data() + t * keys_seen;
            kernels::softmax(row, visible);
            std::fill(row + visible, row + keys_seen, 0.0f);
          }
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd, keys_seen, 1.0f,
                      rows.data(), keys_seen, v_head, KV, 0.0f, out + t0 * Q, Q);
        }
        return;
      }
      rows.resize(T);
      for (size_t t = 0; t < n; ++t) {
        const size_t visible = n_past_ + t + 1;
        // scores[visible] = K_head[visible, hd] · q; out[hd] = V_head[visible, hd]ᵀ · p
        // (matrix-vector calls: sgemm with one row packed its operands on every call).
        cblas_sgemv(CblasRowMajor, CblasNoTrans, visible, hd, scale, k_head, KV,
                    s.q.data() + t * Q + head * hd, 1, 0.0f, rows.data(), 1);
        kernels::softmax(rows.data(), visible);
        cblas_sgemv(CblasRowMajor, CblasTrans, visible, hd, 1.0f, v_head, KV, rows.data(), 1, 0.0f,
                    out + t * Q, 1);
      }
    };
    s.pool->run(c.n_head, head_task);
  }
  for (uint32_t head = 0; head < c.n_head && !opts_.fast; ++head) {
    const size_t kvh = head / group;
    // scores[n, T] = q_head[n, hd] · K_head[T, hd]ᵀ / sqrt(hd)
    blas::sgemm(opts_.n_threads, CblasNoTrans, CblasTrans, n, T, hd, scale, s.q.data() + head * hd,
                Q, keys + kvh * hd, KV, 0.0f, s.scores.data(), T);
    for (size_t t = 0; t < n; ++t) {  // causal softmax: token t sees keys 0 .. n_past + t
      float* row = s.scores.data() + t * T;
      const size_t visible = n_past_ + t + 1;
      kernels::softmax_reference(row, visible);
      std::fill(row + visible, row + T, 0.0f);
    }
    // out_head[n, hd] = scores[n, T] · V_head[T, hd]
    blas::sgemm(opts_.n_threads, CblasNoTrans, CblasNoTrans, n, hd, T, 1.0f, s.scores.data(), T,
                values + kvh * hd, KV, 0.0f, s.attn.data() + head * hd, Q);
  }
  s.acts_source = nullptr;
  hook(L.wo, s.attn.data(), Q);
  linear(*L.wo, s.attn.data(), n, s.ffn.data());
  // SwiGLU feed-forward block
  s.for_chunks(n, 8, [&](size_t r0, size_t r1) {
    for (size_t i = r0 * D; i < r1 * D; ++i) x[i] += s.ffn[i];
    rms_norm(x + r0 * D, L.ffn_norm.data(), s.h.data() + r0 * D, r1 - r0, D, c.norm_eps);
  });
  s.acts_source = nullptr;
  for (const TensorView* w : {L.wgate, L.wup}) hook(w, s.h.data(), D);
  linear(*L.wgate, s.h.data(), n, s.gate.data());
  linear(*L.wup, s.h.data(), n, s.up.data());
  if (opts_.fast) {  // over the pool in chunks (the reference keeps std::exp, one thread)
    s.for_chunks(n * F, 4096,
                 [&](size_t i0, size_t i1) { kernels::silu_mul(&s.gate[i0], &s.up[i0], i1 - i0); });
  } else {
    kernels::silu_mul_reference(s.gate.data(), s.up.data(), n * F);
  }
  s.acts_source = nullptr;
  if (c.ffn_down_hadamard) s.hadamard(s.gate.data(), n, F);
  hook(L.wdown, s.gate.data(), F);
  linear(*L.wdown, s.gate.data(), n, s.ffn.data());
  s.for_chunks(n * D, 8 * D, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) x[i] += s.ffn[i];
  });
}

void Engine::final_norm(const float* x, size_t n, float* h) const {
  const ModelConfig& c = model_.config;
  rms_norm(x, impl_->output_norm.data(), h, n, c.n_embd, c.norm_eps);
}

void Engine::head(const float* x, size_t n, std::vector<float>& logits) {
  const ModelConfig& c = model_.config;
  Impl& s = *impl_;
  std::vector<float> h(n * c.n_embd);
  final_norm(x, n, h.data());
  logits.resize(n * c.n_vocab);
  if (hook_) hook_(s.output->name, h.data(), n, c.n_embd);
  s.acts_source = nullptr;
  linear(*s.output, h.data(), n, logits.data());
}

void Engine::eval(const int32_t* tokens, size_t n, std::vector<float>& logits, bool all_logits) {
  const ModelConfig& c = model_.config;
  Impl& s = *impl_;
  if (n == 0) fail(ErrorKind::Argument, "eval: no tokens");
  if (n_past_ + n > n_ctx_)
    fail(ErrorKind::Argument, "eval: {} + {} tokens exceed the context of {}", n_past_, n, n_ctx_);
  std::vector<float>& x = s.x;  // forward_layer resizes the other scratch buffers, not this one
  x.resize(n * c.n_embd);
  embed(tokens, n, x.data());
  for (uint32_t l = 0; l < s.layers.size(); ++l) forward_layer(l, x.data(), n);
  const size_t first = all_logits ? 0 : n - 1;
  head(x.data() + first * c.n_embd, n - first, logits);
  n_past_ += n;
}

}  // namespace lowbit
