// Matrix products whose results do not depend on the thread count.
//
// OpenBLAS splits a product's sums differently for each thread count, so files and
// statistics would differ between -t 1 and -t 2. Here OpenBLAS runs single-threaded and
// these functions cut C into blocks fixed by the shape alone (64 rows, or 256 columns when
// C has few rows), one single-threaded call per block, the blocks spread over n_threads:
// every element comes from the same call whatever the thread count.
#pragma once

#include <cblas.h>

#include <cstddef>

namespace lowbit::blas {

// Makes OpenBLAS single-threaded for the process (idempotent; cheap after the first call).
void make_single_threaded();

// C[m, n] = alpha op(A)[m, k] op(B)[k, n] + beta C, row-major, as cblas_sgemm/dgemm.
void sgemm(int n_threads, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, size_t m, size_t n, size_t k,
           float alpha, const float* a, size_t lda, const float* b, size_t ldb, float beta,
           float* c, size_t ldc);
void dgemm(int n_threads, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, size_t m, size_t n, size_t k,
           double alpha, const double* a, size_t lda, const double* b, size_t ldb, double beta,
           double* c, size_t ldc);

}  // namespace lowbit::blas
