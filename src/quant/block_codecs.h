// One quantize/dequantize pair per GGUF block type, operating on a single block.
// quantize: x = block_size values, w = their importance weights (null = uniform).
#pragma once

#include <cstdint>

#include "lowbit/dtype.h"

namespace lowbit::quant {

using QuantizeBlockFn = void (*)(const float* x, const float* w, uint8_t* block);
using DequantizeBlockFn = void (*)(const uint8_t* block, float* y);

struct BlockCodec {
  DType type;
  QuantizeBlockFn quantize;
  DequantizeBlockFn dequantize;
};

// nullptr when the type has no block codec (plain floats, integers, Q8_1/Q8_K).
const BlockCodec* block_codec(DType t);

// Defined in blocks_legacy.cpp and blocks_k.cpp.
void quantize_q4_0(const float*, const float*, uint8_t*);   void dequantize_q4_0(const uint8_t*, float*);
void quantize_q4_1(const float*, const float*, uint8_t*);   void dequantize_q4_1(const uint8_t*, float*);
void quantize_q5_0(const float*, const float*, uint8_t*);   void dequantize_q5_0(const uint8_t*, float*);
void quantize_q5_1(const float*, const float*, uint8_t*);   void dequantize_q5_1(const uint8_t*, float*);
void quantize_q8_0(const float*, const float*, uint8_t*);   void dequantize_q8_0(const uint8_t*, float*);
void quantize_iq4_nl(const float*, const float*, uint8_t*); void dequantize_iq4_nl(const uint8_t*, float*);
void quantize_q2_k(const float*, const float*, uint8_t*);   void dequantize_q2_k(const uint8_t*, float*);
void quantize_q3_k(const float*, const float*, uint8_t*);   void dequantize_q3_k(const uint8_t*, float*);
void quantize_q4_k(const float*, const float*, uint8_t*);   void dequantize_q4_k(const uint8_t*, float*);
void quantize_q5_k(const float*, const float*, uint8_t*);   void dequantize_q5_k(const uint8_t*, float*);
void quantize_q6_k(const float*, const float*, uint8_t*);   void dequantize_q6_k(const uint8_t*, float*);
void quantize_iq4_xs(const float*, const float*, uint8_t*); void dequantize_iq4_xs(const uint8_t*, float*);

}  // namespace lowbit::quant
