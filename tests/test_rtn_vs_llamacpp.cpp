// Round-to-nearest against llama.cpp's reference quantizer, type by type, on matrix classes
// that real checkpoints contain: tinyllm-8m's tensors, the outlier model's, Gaussian,
// heavy-tailed, Qwen2-like (input channels of very different scales plus a few massive
// weights) and rows whose scales spread over four decades.
//
// An error E = W - Q splits into the part along W (a uniform shrink of the row, which every
// later layer sees coherently) and the part no rescaling can remove. Model-level KLD depends
// on both (docs/QUANTIZATION.md, "Round to nearest"), so lowbit must be no worse than
// llama.cpp on each: the row error after the best per-row scale, and the tensor's shrink.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>

#include "judge_support.h"
#include "lowbit/model.h"
#include "lowbit/quant.h"
#include "lowbit/tensor.h"
#include "quant/block_codecs.h"
#include "test_support.h"

namespace lowbit {
namespace {

struct Matrix {
  std::string name;
  uint64_t rows = 0, cols = 0;
  std::vector<float> w;  // rows x cols, row-major
};

Matrix first_rows(const Model& m, const std::string& model, const std::string& tensor,
                  uint64_t rows) {
  const TensorView& t = m.tensor(tensor);
  Matrix out{model + " " + tensor, rows, t.row_len(), {}};
  out.w.resize(rows * out.cols);
  dequantize_rows(t, 0, rows, out.w.data());
  return out;
}

Matrix synthetic(const std::string& name, uint64_t rows, uint64_t cols, uint32_t seed,
                 const std::function<float(std::mt19937&, uint64_t r, uint64_t c)>& draw) {
  Matrix out{name, rows, cols, std::vector<float>(rows * cols)};
  std::mt19937 rng(seed);
  for (uint64_t r = 0; r < rows; ++r)
    for (uint64_t c = 0; c < cols; ++c) out.w[r * cols + c] = draw(rng, r, c);
  return out;
}

std::vector<Matrix> matrix_classes() {
  std::vector<Matrix> out;
  const Model tiny = load_model(test::shared_path("models/tinyllm-8m"));
  const Model outl = load_model(test::shared_path("models/tinyllm-8m-outliers"));
  for (const char* t : {"blk.0.attn_k.weight", "blk.3.attn_q.weight", "blk.5.ffn_up.weight",
                        "blk.7.ffn_down.weight", "token_embd.weight"})
    out.push_back(first_rows(tiny, "tinyllm-8m", t, 64));
  for (const char* t : {"blk.2.attn_q.weight", "blk.6.ffn_down.weight"})
    out.push_back(first_rows(outl, "outliers", t, 64));
  const uint64_t rows = 64, cols = 1024;
  std::normal_distribution<float> n01(0.0f, 1.0f);
  out.push_back(synthetic("gaussian", rows, cols, 11,
                          [&](std::mt19937& g, uint64_t, uint64_t) { return 0.02f * n01(g); }));
  std::student_t_distribution<float> t3(3.0f);
  out.push_back(synthetic("student-t, 3 dof", rows, cols, 12,
                          [&](std::mt19937& g, uint64_t, uint64_t) { return 0.02f * t3(g); }));
  // Qwen2-like: input channel scales log-normal, 2% of channels 8x, one weight in 500 at 30x.
  std::vector<float> col_scale(cols);
  {
    std::mt19937 g(13);
    std::lognormal_distribution<float> ln(0.0f, 0.6f);
    for (uint64_t c = 0; c < cols; ++c) col_scale[c] = ln(g) * (c % 50 == 7 ? 8.0f : 1.0f);
  }
  out.push_back(
      synthetic("qwen2-like", rows, cols, 14, [&](std::mt19937& g, uint64_t r, uint64_t c) {
        const float v = 0.02f * col_scale[c] * n01(g);
        return (r * cols + c) % 500 == 123 ? 30.0f * v : v;
      }));
  std::vector<float> row_scale(rows);
  for (uint64_t r = 0; r < rows; ++r) row_scale[r] = std::pow(10.0f, -3.0f + 4.0f * r / (rows - 1));
  out.push_back(
      synthetic("row scales 1e-3..10", rows, cols, 15,
                [&](std::mt19937& g, uint64_t r, uint64_t) { return row_scale[r] * n01(g); }));
  return out;
}

// Relative errors of y against x (rows x cols), each over the matching energy of x.
struct Errors {
  double mse = 0;     // sum (x - y)^2
  double fitted = 0;  // sum over rows of min_a |x_r - a y_r|^2: what no row scale removes
  double shrink = 0;  // 1 - <x, y> / <x, x>: the coherent part (> 0 = smaller weights)
  double x2 = 0;      // sum x^2 (x - y)^2 / sum x^4: llama.cpp's criterion for Q3_K and Q6_K
  double output = 0;  // |E X^T|^2 / |W X^T|^2 over inputs X with channels of unequal scale
  double peak = 0;    // sum (x - y)^2 / sum x^2 over the largest 1/512 of the |x|
};

// 48 input vectors whose channels have log-normal scales and 1% of them 10x (activation
// outliers), so `output` weighs columns as a layer's Hessian would.
std::vector<float> inputs(uint64_t cols) {
  std::mt19937 g(21);
  std::lognormal_distribution<float> ln(0.0f, 0.5f);
  std::normal_distribution<float> n01(0.0f, 1.0f);
  std::vector<float> scale(cols), x(48 * cols);
  for (uint64_t c = 0; c < cols; ++c) scale[c] = ln(g) * (c % 100 == 3 ? 10.0f : 1.0f);
  for (size_t i = 0; i < x.size(); ++i) x[i] = scale[i % cols] * n01(g);
  return x;
}

Errors measure(const Matrix& m, const std::vector<float>& y) {
  const std::vector<float> in = inputs(m.cols);
  double xx = 0, xy = 0, x4 = 0, out_w = 0;
  Errors e;
  for (uint64_t r = 0; r < m.rows; ++r) {
    const float* a = m.w.data() + r * m.cols;
    const float* b = y.data() + r * m.cols;
    double rxx = 0, rxy = 0, ryy = 0;
    for (uint64_t c = 0; c < m.cols; ++c) {
      const double d = double(a[c]) - b[c], sq = double(a[c]) * a[c];
      rxx += sq, rxy += double(a[c]) * b[c], ryy += double(b[c]) * b[c];
      e.mse += d * d, e.x2 += sq * d * d, x4 += sq * sq;
    }
    xx += rxx, xy += rxy;
    e.fitted += ryy > 0 ? rxx - rxy * rxy / ryy : rxx;
    for (size_t t = 0; t < in.size() / m.cols; ++t) {
      double ow = 0, oe = 0;
      for (uint64_t c = 0; c < m.cols; ++c) {
        ow += double(a[c]) * in[t * m.cols + c];
        oe += (double(a[c]) - b[c]) * in[t * m.cols + c];
      }
      out_w += ow * ow, e.output += oe * oe;
    }
  }
  e.mse /= xx, e.fitted /= xx, e.x2 /= x4, e.output /= out_w;
  std::vector<size_t> idx(m.w.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  const size_t k = std::max<size_t>(1, idx.size() / 512);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](size_t a, size_t b) { return std::fabs(m.w[a]) > std::fabs(m.w[b]); });
  double pe = 0, px = 0;
  for (size_t i = 0; i < k; ++i) {
    const double a = m.w[idx[i]], d = a - y[idx[i]];
    pe += d * d, px += a * a;
  }
  e.peak = pe / px;
  e.shrink = 1 - xy / xx;
  return e;
}

std::vector<float> dequantized(DType t, const std::string& bytes, size_t n) {
  std::vector<float> y(n);
  dequantize_values(t, reinterpret_cast<const uint8_t*>(bytes.data()), n, y.data());
  return y;
}

// f16 scales store a block's rescale to about 2^-11, so shrinks below that are a tie.
constexpr double kShrinkTie = 5e-4;

TEST(RtnVsLlamaCpp, NoTypeLosesToLlamaCppsQuantizerOnAnyMatrixClass) {
  test::TempDir dir;
  std::printf(
      "| matrix | type | fitted (lowbit / llama.cpp) | shrink lowbit | shrink llama.cpp |"
      " MSE ratio | x2-weighted ratio | output ratio | peak lowbit | peak llama.cpp "
      "|\n|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Matrix& m : matrix_classes()) {
    test::write_file(dir.file("x.f32"),
                     std::string(reinterpret_cast<const char*>(m.w.data()), m.w.size() * 4));
    for (DType t : test::block_types()) {
      SCOPED_TRACE(m.name + " " + dtype_name(t));
      std::vector<std::string> args = {"quantize-rows",        std::to_string(traits(t).ggml_id),
                                       std::to_string(m.rows), std::to_string(m.cols),
                                       dir.file("x.f32"),      dir.file("q.bin")};
      if (test::llamacpp_needs_importance(t)) {  // all-ones: no preference among the columns
        const std::vector<float> ones(m.cols, 1.0f);
        test::write_file(dir.file("ones.f32"),
                         std::string(reinterpret_cast<const char*>(ones.data()), ones.size() * 4));
        args.push_back(dir.file("ones.f32"));
      }
      test::run_llamacpp_native(args);
      const Errors theirs =
          measure(m, dequantized(t, test::read_file(dir.file("q.bin")), m.w.size()));
      std::string ours_bytes(m.rows * m.cols / traits(t).block_size * traits(t).type_size, '\0');
      quantize_rows(t, m.w.data(), m.rows, m.cols, nullptr,
                    reinterpret_cast<uint8_t*>(ours_bytes.data()));
      const Errors ours = measure(m, dequantized(t, ours_bytes, m.w.size()));
      std::printf("| %s | %s | %.3f | %+.4f | %+.4f | %.3f | %.3f | %.3f | %.3g | %.3g |\n",
                  m.name.c_str(), dtype_name(t), ours.fitted / theirs.fitted, ours.shrink,
                  theirs.shrink, ours.mse / theirs.mse, ours.x2 / theirs.x2,
                  ours.output / theirs.output, ours.peak, theirs.peak);
      EXPECT_LE(ours.fitted, theirs.fitted);
      const quant::BlockCodec& codec = *quant::block_codec(t);
      if (codec.debias && !codec.quantize_block) {
        EXPECT_LE(std::fabs(ours.shrink), std::max(std::fabs(theirs.shrink), kShrinkTie));
      } else if (codec.debias) {
        // The codebook types clip the rare 30x weights of the outlier classes, which the
        // row rescale (clamped at 1.25) cannot make up: there the rescale must only reduce
        // the shrink (docs/QUANTIZATION.md, "Codebook types").
        std::string plain(ours_bytes.size(), '\0');
        quant::quantize_rows(t, m.w.data(), m.rows, m.cols, nullptr, false,
                             reinterpret_cast<uint8_t*>(plain.data()));
        const double before = measure(m, dequantized(t, plain, m.w.size())).shrink;
        EXPECT_LE(std::fabs(ours.shrink), std::max(std::fabs(before), kShrinkTie));
        std::printf("|   | shrink without the rescale | %+.4f |\n", before);
      }
    }
  }
}

}  // namespace
}  // namespace lowbit
