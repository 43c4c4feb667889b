// The grids with an offset or a min (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K): the K super-block search,
// and grids that hold 0 exactly.
//
// The usual grids of these types need not contain 0, so a pruned weight would decode to the
// grid point nearest 0. The zero-holding grids make one code of each group decode to 0:
//   Q4_1, Q5_1  value = d*(q - k), stored as f16 d and f16 m = -k*d, with k*d exact in f16;
//   K types     value = d*sc*q - dmin*mn, with dmin = 2^e*d and mn = sc*k / 2^e in the groups
//               that hold a 0, so code k decodes to d*sc*k - d*sc*k (each product exact in f32).
// The codecs' choose_X use them for a block whose values hold an exact 0 (a pruned model);
// GPTQ asks for them on every block while it prunes (BlockCodec::choose_zero), since the zeros
// appear during its sweep.
#pragma once

namespace lowbit::quant {

// Factors on the super-scale max/smax that the K searches try.
inline constexpr float kSuperScaleFactors[] = {1.0f, 0.97f, 0.94f, 0.91f, 0.88f};

// An affine K super-block: value = d*sc[j]*q - dmin*mn[j] in sub-block j, q in [0, qmax].
struct AffineK {
  float d = 0, dmin = 0;
  int sc[16] = {}, mn[16] = {};
};

// n_sub sub-blocks of len values, integer scales and mins in [0, smax]: a few super-scales
// near max/smax, and per sub-block the integer scale and min next to the rounded float ones,
// kept by weighted error.
AffineK choose_affine_k(const float* x, const float* w, int n_sub, int len, int qmax, int smax);
// The same with 0 on every sub-block's grid.
AffineK choose_affine_k_with_zero(const float* x, const float* w, int n_sub, int len, int qmax,
                                  int smax);

bool has_exact_zero(const float* x, int n);

// Codes q in [0, qmax] on value = d*(q - zero), d >= 0. With f16 set, d and zero*d are both
// f16 values (Q4_1, Q5_1 store d and m = -zero*d).
struct ZeroAffine {
  float d = 0;
  int zero = 0;
};
ZeroAffine fit_affine_with_zero(const float* x, const float* w, int n, int qmax, bool f16);

}  // namespace lowbit::quant
