// Fast matrix-vector kernels on quantized weights.
//
// A weight row stored in a GGUF block type is multiplied by an activation row quantized on
// the fly to 8-bit integers (as llama.cpp does with Q8_0 / Q8_K): 32-value activation blocks
// for the 32-value weight types, 256-value blocks for the K, IQ3, IQ4_XS and TQ types. The
// products of integer codes are summed exactly in int32 and scaled once per weight block. F32, F16
// and BF16 weights are converted to f32 in registers and multiplied by f32 activations.
//
// Every type has a scalar reference (dot_reference) and a SIMD version (Highway, chosen at
// start-up for the best instruction set the CPU has). On AVX-512 VNNI, Q8_0, Q2_K..Q6_K and
// IQ4_XS take byte-product kernels instead (matvec_vnni.cpp). LOWBIT_FORCE_SCALAR=1 in the
// environment, or force_scalar(true), makes every call use the scalar reference.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "lowbit/dtype.h"

namespace lowbit::kernels {

// Activations for the integer kernels: rows of `row_len` values, each row cut into blocks of
// `block` values with one f32 scale d; value ≈ d * q, q in [-127, 127] (held as int16 so the
// kernels multiply without widening). sum16 holds Σq over every 16 consecutive values, for
// the weight types whose blocks carry a minimum (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K).
struct QuantizedActs {
  uint32_t block = 0;  // 32 or 256
  size_t n_rows = 0, row_len = 0;
  std::vector<int16_t> q;      // [n_rows, row_len]
  std::vector<float> d;        // [n_rows, row_len / block]
  std::vector<int32_t> sum16;  // [n_rows, row_len / 16]
  std::vector<uint8_t> u8;     // q + 128 [n_rows, row_len]: the unsigned operand of VNNI
  std::vector<int16_t> sum16_i16;  // sum16 as int16 (|Σ| ≤ 2032), read in pairs by vpdpwssd
};

// One activation row as the kernels read it: quantized (q, d, sum16) or f32 (x).
struct ActRow {
  const int16_t* q = nullptr;
  const float* d = nullptr;
  const int32_t* sum16 = nullptr;
  const float* x = nullptr;
  const uint8_t* u8 = nullptr;         // q + 128, for the VNNI kernels (may be null)
  const int16_t* sum16_i16 = nullptr;  // sum16 as int16 (set together with u8)
};
ActRow act_row(const QuantizedActs& a, size_t row);

// True when `t` has a kernel: the GGUF block types (except the activation-only Q8_1/Q8_K),
// F32, F16 and BF16.
bool has_kernel(DType t);
// Activation block the weight type expects: 32, 256, or 0 for float weights (f32 activations).
uint32_t act_block(DType t);

// Quantizes n_rows rows of x [n_rows, row_len] (row_len a multiple of block) to `out`.
void quantize_acts(const float* x, size_t n_rows, size_t row_len, uint32_t block,
                   QuantizedActs& out);
// quantize_acts in two steps, for callers that spread the rows over threads: resize_acts sizes
// `out` for n_rows × row_len in blocks of `block` (and checks them), then quantize_act_rows
// fills rows [r0, r1) of it from the whole x [n_rows, row_len]. Disjoint ranges may run at once.
void resize_acts(QuantizedActs& out, size_t n_rows, size_t row_len, uint32_t block);
void quantize_act_rows(const float* x, size_t r0, size_t r1, QuantizedActs& out);

// y[r] = Σ_i w[r, i] · a[i] for the n_rows consecutive rows of w (row_bytes apart), each of
// row_len values stored as `t`.
void dot_rows(DType t, const uint8_t* w, size_t row_bytes, size_t n_rows, size_t row_len,
              const ActRow& a, float* y);
// The same for n_acts tokens: y[t * ld_y + r] for activation row acts[t]. With the VNNI
// kernels, one pass per token; otherwise Q8_0, Q4_K and Q6_K decode each weight vector once
// for four tokens, and the table-decoded types (IQ4_*, IQ3_*, IQ2_*) each row once for all.
void dot_rows_multi(DType t, const uint8_t* w, size_t row_bytes, size_t n_rows, size_t row_len,
                    const ActRow* acts, size_t n_acts, float* y, size_t ld_y);
// The scalar reference of dot_rows, whatever force_scalar says.
void dot_rows_reference(DType t, const uint8_t* w, size_t row_bytes, size_t n_rows, size_t row_len,
                        const ActRow& a, float* y);

// W8A8 (SmoothQuant): out[t, r] = Σ_i w[r, i] · x[t, i] for int8 weights w [n_rows, cols]
// and int8 activations x [n_tok, cols], exact in int32; out rows are ld_out apart. Values
// must lie in [-127, 127].
void gemm_i8(const int8_t* w, size_t n_rows, size_t cols, const int8_t* x, size_t n_tok,
             int32_t* out, size_t ld_out);
void gemm_i8_reference(const int8_t* w, size_t n_rows, size_t cols, const int8_t* x, size_t n_tok,
                       int32_t* out, size_t ld_out);
// Activations to int8, q = clamp(round(x / s), -127, 127): one scale per row, s = max|x_row| /
// 127 (dynamic, per token) when static_scale is 0, else s = static_scale for every row.
// scales: [n_rows]; q: [n_rows, cols].
void quantize_acts_i8(const float* x, size_t n_rows, size_t cols, float static_scale, int8_t* q,
                      float* scales);

// Weights repacked once for batched products (prompts, perplexity windows, calibration).
// Rows are grouped in panels of 16 (the last one padded with zero rows). A panel holds, for
// each block of the weight's type (32 or 256 values), one record:
//   codes  int8 [block / 4][16 rows][4 values]  v of block_ints.h, 4 columns per lane
//   d      f32 [16], dmin f32 [16] (types with a minimum only)
//   corr   int32 [16] = 128 · Σ_s scale[s] · Σ_{e in s} v[e]
//   scale  int32 [n_sub][16] (the 256-value types only)
//   min    int16 [block / 32][16][2]: the mins of each 16 values, two per lane (minimum only)
// A lane then multiplies 4 unsigned activation bytes (q + 128) with 4 codes (VNNI vpdpbusd):
// Σ (q + 128)·v − the weight-only corr is Σ q·v, exactly.
struct PackedRows {
  static constexpr size_t kPanel = 16;
  DType type = DType::F32;
  size_t rows = 0, cols = 0;
  int block = 32, sub = 32, n_sub = 1;
  bool scaled = false, has_min = false;
  size_t record_bytes = 0, panel_bytes = 0;  // one block's record, one panel
  size_t n_panels() const { return (rows + kPanel - 1) / kPanel; }
  std::vector<uint8_t> bytes;  // [n_panels][cols / block][record_bytes]
};
// Every integer block type that has a dot product (not the float types).
bool has_packed_kernel(DType t);
// Packs n_rows rows of row_len values stored as `t`, row_bytes apart.
PackedRows pack_rows(DType t, const uint8_t* w, size_t row_bytes, size_t n_rows, size_t row_len);
// y[t * ld_y + r] = Σ_i w[r, i] · a[t, i] for the rows of panels [p0, p1) and every token of
// `a` (quantized to the weight's block, with u8). Per block, in f32: acc += isum · (d·d_act)
// then acc −= msum · (dmin·d_act), both fused; the reference does the same operations.
void packed_gemm(const PackedRows& w, size_t p0, size_t p1, const QuantizedActs& a, float* y,
                 size_t ld_y);
void packed_gemm_reference(const PackedRows& w, size_t p0, size_t p1, const QuantizedActs& a,
                           float* y, size_t ld_y);
// True when packed_gemm runs a vector kernel (AVX-512 VNNI) under the current dispatch; the
// engine then prefers it for batches.
bool packed_gemm_is_fast();

// The orthonormal Hadamard transform of each of `rows` rows of n values, in place:
// x ← H x / √n with H = hadamard_matrix(n) (lowbit/rotation.h) = H_m ⊗ H_(2^k). Row layout
// [m, 2^k]: a fast Walsh–Hadamard transform (butterflies) along each of the m pieces, then
// H_m (entries ±1: additions only) across them, then the scale. Throws Unsupported for an n
// without a Hadamard matrix. The SIMD version does the same additions in the same order.
void hadamard_rows(float* x, size_t rows, uint32_t n);
void hadamard_rows_reference(float* x, size_t rows, uint32_t n);

// Simulated activation quantization (EngineOptions::act_bits), in place, per row of `cols`:
// x ← clamp(round(x / s), −q, q) · s with q = 2^(bits−1) − 1 and s = clip · max|x| / q
// (rows of zeros stay). Rounding is to nearest, ties to even.
void round_acts_per_token(float* x, size_t rows, size_t cols, int bits, float clip);
// The same with one static range for all n values: s = clip · range / q (a range of 0 leaves
// x as it is).
void round_acts_to_range(float* x, size_t n, int bits, float clip, float range);

// The same rounding kept as integer codes for the integer kernels (W4A4, W4A8): row r of `out`
// holds q = clamp(round(x / s), −qmax, qmax) and d = s in each of its blocks, so a dot
// product with it is the product with the rounded values (round_acts_per_token, or
// round_acts_to_range when `range` is given) summed exactly. s: clip · max|x_row| / qmax per
// token, or clip · *range / qmax for every row (a range of 0 throws Argument).
void quantize_acts_rounded(const float* x, size_t n_rows, size_t row_len, uint32_t block, int bits,
                           float clip, const float* range, QuantizedActs& out);

// SwiGLU's element-wise step: gate[i] ← gate[i] / (1 + e^(−gate[i])) · up[i] for i < n. The
// vector form's exponential is a few ulp from std::exp's (the reference), and it gives 0 at
// gate −inf (the reference: NaN); every value's result depends on that value alone, so any
// split of the array gives the same results.
void silu_mul(float* gate, const float* up, size_t n);
void silu_mul_reference(float* gate, const float* up, size_t n);
// row[0, n) ← e^(row − max) / Σ e^(row − max) (nothing for n = 0). The reference sums in
// double with std::exp; the vector form sums in f32 lanes with Highway's Exp (relative
// error up to about n / lanes · 2^−24 against the reference, ~2e-6 at n = 8192 here).
void softmax(float* row, size_t n);
void softmax_reference(float* row, size_t n);

// The scalar reference for every call (tests; the LOWBIT_FORCE_SCALAR environment variable
// sets the initial value).
void force_scalar(bool on);
bool scalar_forced();
// Name of the instruction set dot_rows uses now, e.g. "AVX3", "AVX2", "scalar (forced)".
std::string active_isa();
// Instruction sets this CPU supports that the SIMD kernels were compiled for (Highway target
// bits), and a way to restrict dispatch to one of them (tests; 0 restores all).
std::vector<int64_t> available_isas();
std::string isa_name(int64_t isa);
void restrict_isa(int64_t isa);

}  // namespace lowbit::kernels
