#include "core/blas.h"

#include <mutex>

#include "core/parallel.h"

extern "C" void openblas_set_num_threads(int);

namespace lowbit::blas {
namespace {

constexpr size_t kRowBlock = 64, kColBlock = 256;

template <typename T, typename Gemm>
void blocked(int n_threads, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, size_t m, size_t n, size_t k,
             T alpha, const T* a, size_t lda, const T* b, size_t ldb, T beta, T* c, size_t ldc,
             Gemm gemm) {
  make_single_threaded();
  if (m == 0 || n == 0) return;
  auto call = [&](size_t i0, size_t mi, size_t j0, size_t nj) {
    const T* ai = ta == CblasNoTrans ? a + i0 * lda : a + i0;  // rows i0.. of op(A)
    const T* bj = tb == CblasNoTrans ? b + j0 : b + j0 * ldb;  // columns j0.. of op(B)
    gemm(CblasRowMajor, ta, tb, int(mi), int(nj), int(k), alpha, ai, int(lda), bj, int(ldb), beta,
         c + i0 * ldc + j0, int(ldc));
  };
  const bool by_rows = m >= 2 * kRowBlock;
  const size_t len = by_rows ? m : n, block = by_rows ? kRowBlock : kColBlock;
  const size_t n_blocks = (len + block - 1) / block;
  parallel_for(n_blocks, n_threads, [&](uint64_t b0, uint64_t b1) {
    for (uint64_t blk = b0; blk < b1; ++blk) {
      const size_t s = blk * block, e = std::min(len, s + block);
      if (by_rows)
        call(s, e - s, 0, n);
      else
        call(0, m, s, e - s);
    }
  });
}

}  // namespace

void make_single_threaded() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

namespace {
// Also when the library loads, before any LAPACK or CBLAS call: OpenBLAS's own threads (as
// many as the CPUs it may use) change its blocking, so a Cholesky factor made before the
// first product would depend on them, e.g. differ in an MPI rank bound to one core.
const bool kSingleThreadedAtLoad = (make_single_threaded(), true);
}  // namespace

void sgemm(int n_threads, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, size_t m, size_t n, size_t k,
           float alpha, const float* a, size_t lda, const float* b, size_t ldb, float beta,
           float* c, size_t ldc) {
  blocked<float>(n_threads, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, cblas_sgemm);
}

void dgemm(int n_threads, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, size_t m, size_t n, size_t k,
           double alpha, const double* a, size_t lda, const double* b, size_t ldb, double beta,
           double* c, size_t ldc) {
  blocked<double>(n_threads, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, cblas_dgemm);
}

}  // namespace lowbit::blas
