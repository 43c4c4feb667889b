// Byte offsets inside one block record of lowbit::kernels::PackedRows (see kernels.h), shared
// by the packing code, the scalar reference and the vector kernels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "lowbit/kernels.h"

namespace lowbit::kernels {

struct RecordLayout {
  size_t d = 0, dmin = 0, corr = 0, scale = 0, min = 0, bytes = 0;  // codes start at 0
};

inline RecordLayout record_layout(int block, int n_sub, bool scaled, bool has_min) {
  constexpr size_t kLanes = 4 * PackedRows::kPanel;  // 16 f32 or int32
  RecordLayout l;
  l.d = PackedRows::kPanel * block;
  l.dmin = l.d + kLanes;
  l.corr = l.dmin + (has_min ? kLanes : 0);
  l.scale = l.corr + kLanes;
  l.min = l.scale + (scaled ? n_sub * kLanes : 0);
  l.bytes = l.min + (has_min ? block / 32 * kLanes : 0);
  return l;
}
inline RecordLayout record_layout(const PackedRows& p) {
  return record_layout(p.block, p.n_sub, p.scaled, p.has_min);
}

inline int32_t load_i32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline float load_f32(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}

// restrict_isa calls this: packed_gemm_is_fast asks Highway again.
void refresh_packed_dispatch();

// The AVX-512 VNNI kernels (packed_gemm_vnni.cpp, matvec_vnni.cpp): false when this CPU
// lacks them. They are compiled for these instructions through function attributes only.
bool vnni_available();
#if defined(__x86_64__)
#define LOWBIT_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")))
#endif
void packed_gemm_vnni(const PackedRows& w, size_t p0, size_t p1, const QuantizedActs& a, float* y,
                      size_t ld_y);

}  // namespace lowbit::kernels
