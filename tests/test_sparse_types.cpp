// lowbit's 2:4 sparse types Q8_0_S24 and Q4_0_S24: packing a 2:4-pruned row loses nothing
// against its dense twin, a dense group keeps its two largest codes, every kernel decodes
// any pattern byte (corrupt ones too) as the dequantizer does, and the quantize job writes
// the blocks' linears packed, the rest dense, with the dense file's weights.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "lowbit/engine.h"
#include "lowbit/error.h"
#include "lowbit/eval.h"
#include "lowbit/file_io.h"
#include "lowbit/float_convert.h"
#include "lowbit/gguf.h"
#include "lowbit/job.h"
#include "lowbit/job_options.h"
#include "lowbit/kernels.h"
#include "lowbit/model.h"
#include "lowbit/quant.h"
#include "lowbit/quantize.h"
#include "lowbit/sparsity.h"
#include "lowbit/tokenizer.h"
#include "quant/block_codecs.h"
#include "test_support.h"

namespace lowbit {
namespace {

constexpr DType kSparse[] = {DType::Q8_0_S24, DType::Q4_0_S24};

std::vector<float> decode(DType t, const std::vector<uint8_t>& bytes, size_t n) {
  std::vector<float> y(n);
  dequantize_values(t, bytes.data(), n, y.data());
  return y;
}

std::vector<uint8_t> encode(DType t, const std::vector<float>& x, size_t rows, size_t cols) {
  std::vector<uint8_t> q(rows * cols / 32 * traits(t).type_size);
  quantize_rows(t, x.data(), rows, cols, nullptr, q.data());
  return q;
}

TEST(Sparse2of4, PackingAPrunedRowLosesNothingAgainstTheDenseTwin) {
  const size_t rows = 8, cols = 256;
  std::vector<float> x = test::gaussian(rows * cols, 3);
  for (size_t i = 0; i < x.size(); i += 37) x[i] *= 8;  // outliers set the block scales
  const SparsityPattern p = parse_nm("2:4");
  const std::vector<float> pruned =
      apply_mask(x, prune_mask(PruneMethod::Magnitude, x.data(), rows, cols, nullptr, p));
  for (DType t : kSparse) {
    SCOPED_TRACE(dtype_name(t));
    const DType dense = traits(t).dense_twin;
    const auto q = encode(t, pruned, rows, cols), qd = encode(dense, pruned, rows, cols);
    EXPECT_EQ(q.size() * traits(dense).type_size, qd.size() * traits(t).type_size);
    EXPECT_EQ(decode(t, q, x.size()), decode(dense, qd, x.size()));
    EXPECT_NEAR(bits_per_weight(t), t == DType::Q8_0_S24 ? 5.5 : 3.5, 1e-12);
    // and the kernels give the dense twin's products
    kernels::QuantizedActs a;
    const std::vector<float> act = test::gaussian(cols, 4);
    kernels::quantize_acts(act.data(), 1, cols, 32, a);
    for (int64_t isa : kernels::available_isas()) {
      SCOPED_TRACE(kernels::isa_name(isa));
      kernels::restrict_isa(isa);
      std::vector<float> ys(rows), yd(rows);
      kernels::dot_rows(t, q.data(), q.size() / rows, rows, cols, kernels::act_row(a, 0),
                        ys.data());
      kernels::dot_rows(dense, qd.data(), qd.size() / rows, rows, cols, kernels::act_row(a, 0),
                        yd.data());
      for (size_t r = 0; r < rows; ++r) EXPECT_NEAR(ys[r], yd[r], 1e-5 * (1 + std::fabs(yd[r])));
    }
    kernels::restrict_isa(0);
  }
}

// Codes of one block per group: [4 non-zero], [3 non-zero with a tie], [1 non-zero], [none].
TEST(Sparse2of4, DenseGroupsKeepTheirTwoLargestCodesTheLowerPlaceOnTies) {
  for (DType t : kSparse) {
    SCOPED_TRACE(dtype_name(t));
    const quant::BlockCodec* c = quant::block_codec(t);
    ASSERT_NE(c, nullptr);
    const int bias = t == DType::Q8_0_S24 ? 127 : 8;
    const int levels[32] = {1, -5, 3,  4, 2, 0, -2, 1, 0,  0, -3, 0, 0, 0, 0, 0,
                            7, 6,  -7, 1, 0, 2, 0,  0, -1, 0, 0,  1, 0, 0, 0, 0};
    const int expect[32] = {0, -5, 0,  4, 2, 0, -2, 0, 0,  0, -3, 0, 0, 0, 0, 0,
                            7, 0,  -7, 0, 0, 2, 0,  0, -1, 0, 0,  1, 0, 0, 0, 0};
    int codes[32];
    for (int e = 0; e < 32; ++e) codes[e] = levels[e] + bias;
    std::vector<uint8_t> blk(traits(t).type_size, 0);
    const uint16_t one = f32_to_f16(1.0f);
    std::memcpy(blk.data(), &one, 2);
    c->set_codes(codes, blk.data());
    const std::vector<float> y = decode(t, blk, 32);
    for (int e = 0; e < 32; ++e) EXPECT_EQ(y[e], expect[e]) << "value " << e;
  }
}

// Blocks of random bytes (every pair of places; d a finite f16) against random activations: the
// scalar reference and the SIMD kernel of every instruction set give the dequantized rows' dot
// product with the quantized activations.
TEST(Sparse2of4, EveryKernelDecodesEveryPatternAsTheDequantizer) {
  const size_t rows = 5, cols = 32 * 7;
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> byte(0, 255);
  auto pair = [&, places = std::uniform_int_distribution<int>(0, 5)](std::mt19937& r) mutable {
    constexpr int kPairs[6] = {0 | 1 << 2, 0 | 2 << 2, 0 | 3 << 2,
                               1 | 2 << 2, 1 | 3 << 2, 2 | 3 << 2};
    return kPairs[places(r)];
  };
  const std::vector<float> x = test::gaussian(cols, 5);
  kernels::QuantizedActs a;
  kernels::quantize_acts(x.data(), 1, cols, 32, a);
  std::vector<float> xq(cols);  // the activations as the kernels see them
  for (size_t i = 0; i < cols; ++i) xq[i] = a.d[i / 32] * a.q[i];
  for (DType t : kSparse) {
    SCOPED_TRACE(dtype_name(t));
    const size_t bsize = traits(t).type_size, row_bytes = cols / 32 * bsize;
    std::vector<uint8_t> w(rows * row_bytes);
    for (auto& b : w) b = static_cast<uint8_t>(byte(rng));
    for (size_t b = 0; b < w.size(); b += bsize) {
      const uint16_t d = f32_to_f16(0.01f * (1 + byte(rng) % 7));
      std::memcpy(&w[b], &d, 2);
      for (int i = 0; i < 4; ++i) w[b + 2 + i] = static_cast<uint8_t>(pair(rng) | pair(rng) << 4);
    }
    const std::vector<float> y = decode(t, w, rows * cols);
    std::vector<float> ref(rows);
    kernels::dot_rows_reference(t, w.data(), row_bytes, rows, cols, kernels::act_row(a, 0),
                                ref.data());
    for (size_t r = 0; r < rows; ++r) {
      double s = 0;
      for (size_t i = 0; i < cols; ++i) s += double(y[r * cols + i]) * xq[i];
      EXPECT_NEAR(ref[r], s, 1e-4 * (1 + std::fabs(s))) << "row " << r;
    }
    for (int64_t isa : kernels::available_isas()) {
      SCOPED_TRACE(kernels::isa_name(isa));
      kernels::restrict_isa(isa);
      std::vector<float> got(rows), got4(rows * 4);
      kernels::dot_rows(t, w.data(), row_bytes, rows, cols, kernels::act_row(a, 0), got.data());
      const kernels::ActRow four[4] = {kernels::act_row(a, 0), kernels::act_row(a, 0),
                                       kernels::act_row(a, 0), kernels::act_row(a, 0)};
      kernels::dot_rows_multi(t, w.data(), row_bytes, rows, cols, four, 4, got4.data(), rows);
      for (size_t r = 0; r < rows; ++r) {
        EXPECT_NEAR(got[r], ref[r], 1e-5 * (1 + std::fabs(ref[r]))) << "row " << r;
        for (size_t k = 0; k < 4; ++k)
          EXPECT_NEAR(got4[k * rows + r], ref[r], 1e-5 * (1 + std::fabs(ref[r])));
      }
    }
    kernels::restrict_isa(0);
  }
}

double perplexity(const Model& m, EngineOptions o) {
  const std::string text = read_text_file(test::shared_path("data/wikitext-2/wikitext-2-test.txt"));
  const auto tokens = Tokenizer::create(m.vocab)->encode(text.substr(0, 40000));
  o.n_ctx = 256;
  Engine e(m, o);
  PerplexityOptions p;
  p.max_chunks = 3, p.n_ctx = 256;
  return evaluate_perplexity(e, tokens, p).ppl;
}

JobSettings settings(const std::string& type, const std::string& output) {
  JobSettings s;
  s.job.model = test::shared_path("models/tinyllm-8m");
  s.job.output = output;
  s.type = type;
  s.method = "rtn";
  set_job_option(s, "nm", "2:4");
  return s;
}

// Q4_0_S24 against Q4_0, both pruned 2:4 by magnitude: the same decoded weights, the linears
// in 14 bytes per 32 values instead of 18, everything else the same type and bytes.
TEST(Sparse2of4, QuantizeWritesTheLinearsPackedWithTheDenseFilesWeights) {
  test::TempDir dir;
  const QuantizeReport rs = run_quantize_job(make_job(settings("Q4_0_S24", dir.file("s.gguf"))));
  const QuantizeReport rd = run_quantize_job(make_job(settings("Q4_0", dir.file("d.gguf"))));
  const Model s = load_model(dir.file("s.gguf")), d = load_model(dir.file("d.gguf"));
  ASSERT_EQ(rs.tensors.size(), rd.tensors.size());
  size_t packed = 0;
  for (size_t i = 0; i < rs.tensors.size(); ++i) {
    const TensorReport &a = rs.tensors[i], &b = rd.tensors[i];
    SCOPED_TRACE(a.name);
    const bool linear = a.name.rfind("blk.", 0) == 0 && a.shape.size() == 2;
    EXPECT_EQ(a.type, linear ? sparse_2of4_twin(b.type).value() : b.type);
    packed += linear;
    if (linear) {
      EXPECT_EQ(a.bytes * 18, b.bytes * 14);
    }
    const TensorView &vs = s.tensor(a.name), &vd = d.tensor(a.name);
    std::vector<float> ys(vs.n_values()), yd(vd.n_values());
    dequantize_values(vs.dtype, vs.data, ys.size(), ys.data());
    dequantize_values(vd.dtype, vd.data, yd.size(), yd.data());
    EXPECT_EQ(ys, yd);
    EXPECT_EQ(a.zero_share, b.zero_share);
  }
  EXPECT_EQ(packed, 7u * s.config.n_layer);
  EXPECT_LT(std::filesystem::file_size(dir.file("s.gguf")),
            std::filesystem::file_size(dir.file("d.gguf")));
  // The integer kernels: the scalar references (sums in double per block) agree exactly. The
  // SIMD kernels add the blocks' f32 products in other orders, and the 8-bit activations
  // of the next layer round some values the other way: within the fast path's 0.2%.
  EngineOptions fast;
  fast.fast = true, fast.blas_batch = 0, fast.packed_batch = 0;
  kernels::force_scalar(true);
  const double ps = perplexity(s, fast), pd = perplexity(d, fast);
  kernels::force_scalar(false);
  EXPECT_EQ(ps, pd);
  EXPECT_NEAR(perplexity(s, fast) / ps, 1.0, 2e-3);
  fast.packed_batch = 8;  // batches through the int8 panels, where the CPU has VNNI
  EXPECT_NEAR(perplexity(s, fast) / ps, 1.0, 2e-3);
}

TEST(Sparse2of4, TheJobRefusesWhatCannotBePacked) {
  test::TempDir dir;
  JobSettings s = settings("Q8_0_S24", dir.file("o.gguf"));
  s.job.sparsity = {};
  auto error_of = [&](const JobSettings& js) {
    return test::expect_error([&] { run_quantize_job(make_job(js)); });
  };
  EXPECT_NE(error_of(s).find("Q8_0_S24 stores 2:4-pruned linears"), std::string::npos);
  set_job_option(s, "nm", "4:8");
  EXPECT_NE(error_of(s).find("--nm 2:4"), std::string::npos);
  s = settings("Q8_0", dir.file("o.gguf"));
  set_job_option(s, "tensor-type", "token_embd.weight=Q8_0_S24");
  EXPECT_NE(error_of(s).find("'token_embd.weight': Q8_0_S24 stores"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir.file("o.gguf")));
}

// A block whose group names one place twice (or places in falling order) is refused at load
// with the tensor's name: the kernels rely on rising places.
TEST(Sparse2of4, ReadersRefuseABlockWithoutRisingPlaces) {
  test::TempDir dir;
  const std::vector<float> x = test::gaussian(2 * 64, 8);
  std::vector<uint8_t> q = encode(DType::Q4_0_S24, x, 2, 64);
  GgufWriter w;
  OutputTensor t;
  t.info.name = "blk.0.ffn_up.weight";
  t.info.dtype = DType::Q4_0_S24;
  t.info.shape = {2, 64};
  t.nbytes = q.size();
  t.produce = [&](std::vector<uint8_t>& out) { out = q; };
  w.add_tensor(t);
  w.write(dir.file("ok.gguf"));
  EXPECT_NO_THROW(GgufFile::open(dir.file("ok.gguf")));
  q[14 + 2 + 1] = 0x55;  // block 1, groups 2 and 3: places 1 and 1
  GgufWriter bad;
  bad.add_tensor(t);
  bad.write(dir.file("bad.gguf"));
  const std::string e = test::expect_error([&] { GgufFile::open(dir.file("bad.gguf")); });
  EXPECT_NE(e.find("tensor 'blk.0.ffn_up.weight': block 1 of Q4_0_S24"), std::string::npos) << e;
}

}  // namespace
}  // namespace lowbit
