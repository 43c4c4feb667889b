// Learned rounding: the fixed grids reproduce what the file stores, the trained block is
// exactly what the engine computes from the written bytes, training lowers the block loss,
// and bad input (a non-finite loss) is an error naming the block.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "lowbit/block_grad.h"
#include "lowbit/engine.h"
#include "lowbit/learned.h"
#include "lowbit/quant.h"
#include "lowbit/synthetic.h"
#include "test_support.h"
#include "train/grid_tensor.h"

namespace lowbit {
namespace {

constexpr DType kBlockTypes[] = {DType::Q4_0, DType::Q4_1,   DType::Q5_0, DType::Q5_1,
                                 DType::Q8_0, DType::IQ4_NL, DType::Q2_K, DType::Q3_K,
                                 DType::Q4_K, DType::Q5_K,   DType::Q6_K, DType::IQ4_XS};

TEST(GridTensor, CodesAndValuesAreThoseTheBytesStore) {
  const uint64_t rows = 3, cols = 512;
  const std::vector<float> w = test::gaussian(rows * cols, 4, 0.05f);
  for (DType t : kBlockTypes) {
    SCOPED_TRACE(dtype_name(t));
    std::vector<uint8_t> bytes(rows * cols / traits(t).block_size * traits(t).type_size);
    quantize_rows(t, w.data(), rows, cols, nullptr, bytes.data());
    std::vector<float> stored(rows * cols);
    dequantize_values(t, bytes.data(), stored.size(), stored.data());
    train::GridTensor g(t, bytes, rows, cols);
    const std::vector<int> codes = g.start_codes();
    EXPECT_EQ(g.encode(codes), bytes);  // reading the codes back and writing them changes nothing
    EXPECT_EQ(g.decode(codes), stored);
    for (uint64_t i = 0; i < stored.size(); i += 7) {
      EXPECT_NEAR(g.value(i, float(codes[i])), stored[i], 1e-6f * (1 + std::fabs(stored[i])));
      // another code decodes to its grid point
      const int up = std::min(codes[i] + 1, g.n_codes() - 1);
      std::vector<int> moved = codes;
      moved[i] = up;
      EXPECT_NEAR(g.decode(moved)[i], g.value(i, float(up)), 1e-6f * (1 + std::fabs(stored[i])));
    }
  }
}

// A small random block with weights of a quantized type, and windows through it.
struct Fixture {
  Model m;
  train::BlockShape shape;
  std::vector<LearnedLinear> linears;
  std::vector<std::vector<float>> inputs, targets;
  size_t n_ctx = 32;

  explicit Fixture(DType type) : m(model()) {
    shape = train::block_shape(m);
    const train::BlockWeights<float> fp = train::block_weights(m, 0);
    std::mt19937 rng(9);
    std::normal_distribution<float> d;
    for (int w = 0; w < 6; ++w) {
      std::vector<float> x(n_ctx * shape.n_embd), y(x.size());
      for (float& v : x) v = d(rng);
      train::block_forward(shape, fp, x.data(), n_ctx, y.data());
      inputs.push_back(x), targets.push_back(y);
    }
    train::BlockWeights<float> copy = fp;
    for (int i = 0; i < 7; ++i) {
      const std::vector<float>& w = *copy.linear(i);
      LearnedLinear l;
      l.index = i, l.type = type;
      l.cols = i == 3 ? shape.q_dim() : i == 6 ? shape.n_ff : shape.n_embd;
      l.rows = w.size() / l.cols;
      l.bytes.resize(l.rows * l.cols / traits(type).block_size * traits(type).type_size);
      quantize_rows(type, w.data(), l.rows, l.cols, nullptr, l.bytes.data());
      l.position = w;
      l.importance.assign(l.cols, 1.0f);
      linears.push_back(std::move(l));
    }
  }
  static Model model() {
    ModelConfig c;
    c.arch = "llama";
    c.n_vocab = 32, c.n_embd = 256, c.n_layer = 1, c.n_head = 4, c.n_head_kv = 2, c.head_dim = 64,
    c.n_ff = 512;
    c.n_ctx = 64;
    return make_synthetic_model(c, Vocab{}, 21, DType::F32, 0.08f);
  }
};

// Mean squared error of the block output that lowbit's engine computes from the bytes in
// f.linears.
double engine_loss(Fixture& f) {
  Engine e(f.m, {1, 64});
  std::vector<TensorView> views;
  views.reserve(f.linears.size());
  for (const LearnedLinear& l : f.linears) {
    const TensorView& src =
        f.m.tensor("blk.0." + std::string(train::kLinearNames[l.index]) + ".weight");
    views.push_back(view_of_bytes(src, l.type, l.bytes));
    e.replace_weight(src.name, &views.back());
  }
  double sum = 0;
  for (size_t i = 0; i < f.inputs.size(); ++i) {
    std::vector<float> x = f.inputs[i];
    e.reset();
    e.forward_layer(0, x.data(), f.n_ctx);
    for (size_t j = 0; j < x.size(); ++j)
      sum += double(x[j] - f.targets[i][j]) * (x[j] - f.targets[i][j]);
  }
  return sum / double(f.inputs.size() * f.n_ctx * f.shape.n_embd);
}

TEST(LearnedRounding, EveryMethodLowersTheBlockLossAndTheEngineComputesWhatItTrained) {
  for (LearnedMethod method :
       {LearnedMethod::AutoRound, LearnedMethod::AdaRound, LearnedMethod::AdaQuant}) {
    SCOPED_TRACE(learned_method_name(method));
    Fixture f(DType::Q3_K);
    LearnedOptions o;
    o.method = method;
    o.steps = 30, o.batch = 2;
    const BlockLearnReport r =
        learn_block_rounding(f.shape, train::block_weights(f.m, 0), f.linears, f.inputs, f.targets,
                             f.n_ctx, o, "block 0", 1);
    EXPECT_FALSE(r.kept_start);
    EXPECT_LT(r.loss_end, 0.97 * r.loss_start);
    // The engine on the written bytes computes the loss the method reports.
    EXPECT_NEAR(engine_loss(f), r.loss_end, 1e-4 * r.loss_end);
  }
}

// AdaQuant rounds through the type's own quantizer, so it trains the codebook types too
// (groups of 8 sharing one grid entry: IQ2_XXS with sign parity, IQ1_M's ternary grid).
TEST(LearnedRounding, AdaQuantTrainsTheCodebookTypes) {
  for (DType type : {DType::IQ2_XXS, DType::IQ1_M}) {
    SCOPED_TRACE(dtype_name(type));
    Fixture f(type);
    LearnedOptions o;
    o.method = LearnedMethod::AdaQuant;
    o.steps = 8, o.batch = 2;
    const BlockLearnReport r =
        learn_block_rounding(f.shape, train::block_weights(f.m, 0), f.linears, f.inputs, f.targets,
                             f.n_ctx, o, "block 0", 2);
    EXPECT_FALSE(r.kept_start) << r.loss_start << " -> " << r.loss_end;
    EXPECT_LT(r.loss_end, 0.97 * r.loss_start);
    EXPECT_NEAR(engine_loss(f), r.loss_end, 1e-4 * r.loss_end);
  }
}

TEST(LearnedRounding, KeepsTheGridOfTheStartBytes) {
  Fixture f(DType::Q4_K);
  const std::vector<LearnedLinear> start = f.linears;
  LearnedOptions o;
  o.method = LearnedMethod::AutoRound;
  o.steps = 30, o.batch = 2;
  const BlockLearnReport r = learn_block_rounding(f.shape, train::block_weights(f.m, 0), f.linears,
                                                  f.inputs, f.targets, f.n_ctx, o, "block 0", 1);
  ASSERT_FALSE(r.kept_start) << r.loss_start << " -> " << r.loss_end;
  size_t moved = 0;
  for (size_t k = 0; k < start.size(); ++k) {
    // same grid: writing the learned codes into the start bytes gives the learned bytes
    train::GridTensor before(start[k].type, start[k].bytes, start[k].rows, start[k].cols);
    train::GridTensor after(f.linears[k].type, f.linears[k].bytes, f.linears[k].rows,
                            f.linears[k].cols);
    const std::vector<int> a = before.start_codes(), b = after.start_codes();
    EXPECT_EQ(before.encode(b), f.linears[k].bytes);
    for (size_t i = 0; i < a.size(); ++i) moved += a[i] != b[i];
  }
  EXPECT_GT(moved, 0u);
}

TEST(LearnedRounding, NonFiniteLossIsAnErrorNamingTheBlock) {
  Fixture f(DType::Q4_0);
  f.inputs[0][5] = NAN;
  LearnedOptions o;
  o.steps = 2;
  const std::string msg = test::expect_error([&] {
    learn_block_rounding(f.shape, train::block_weights(f.m, 0), f.linears, f.inputs, f.targets,
                         f.n_ctx, o, "block 3", 1);
  });
  EXPECT_NE(msg.find("block 3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("nan"), std::string::npos) << msg;
}

}  // namespace
}  // namespace lowbit
