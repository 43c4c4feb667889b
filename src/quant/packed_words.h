// Codes packed into 32-bit little-endian words, the two ways the Hugging Face layouts do it:
//   stream  one bit stream, a code may cross into the next word (GPTQ's 3 bits);
//   words   32 / bits codes per word, code k of a word in bits [bits*k, bits*k + bits), the
//           top bits of the word unused when bits does not divide 32 (compressed-tensors).
// For 2, 4 and 8 bits the two agree.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "lowbit/affine.h"

namespace lowbit::quant {

// A [rows, cols] matrix as [cols, rows] (lowbit keeps scales [outputs, groups]; GPTQ and
// AWQ store them [groups, outputs]).
inline std::vector<float> transposed(const std::vector<float>& a, uint64_t rows, uint64_t cols) {
  std::vector<float> t(a.size());
  for (uint64_t r = 0; r < rows; ++r)
    for (uint64_t c = 0; c < cols; ++c) t[c * rows + r] = a[r * cols + c];
  return t;
}

inline std::vector<uint8_t> bytes_of(const std::vector<int32_t>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// n codes as a bit stream (n * bits % 32 == 0).
inline std::vector<int32_t> stream_words(const uint8_t* codes, uint64_t n, int bits) {
  std::vector<uint8_t> packed(n * bits / 8);
  pack_bits(codes, n, bits, packed.data());
  std::vector<int32_t> words(packed.size() / 4);
  std::memcpy(words.data(), packed.data(), packed.size());
  return words;
}
inline void unstream_words(const int32_t* words, uint64_t n, int bits, uint8_t* codes) {
  unpack_bits(reinterpret_cast<const uint8_t*>(words), n, bits, codes);
}

inline uint64_t codes_per_word(int bits) {
  return 32 / static_cast<uint64_t>(bits);
}
inline uint64_t word_count(uint64_t n, int bits) {
  return (n + codes_per_word(bits) - 1) / codes_per_word(bits);
}
// n codes (the last word padded with code 0), `stride` elements between the words written.
inline void pack_words(const uint8_t* codes, uint64_t n, int bits, int32_t* words,
                       uint64_t stride = 1) {
  const uint64_t per = codes_per_word(bits);
  for (uint64_t w = 0; w < word_count(n, bits); ++w) {
    uint32_t v = 0;
    for (uint64_t k = 0; k < per && w * per + k < n; ++k)
      v |= static_cast<uint32_t>(codes[w * per + k]) << (bits * k);
    words[w * stride] = static_cast<int32_t>(v);
  }
}
inline void unpack_words(const int32_t* words, uint64_t n, int bits, uint8_t* codes,
                         uint64_t stride = 1) {
  const uint64_t per = codes_per_word(bits);
  const uint32_t mask = (1u << bits) - 1;
  for (uint64_t i = 0; i < n; ++i)
    codes[i] = static_cast<uint8_t>(
        (static_cast<uint32_t>(words[(i / per) * stride]) >> (bits * (i % per))) & mask);
}

}  // namespace lowbit::quant
