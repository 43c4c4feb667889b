// Wall time, time per block and peak RSS of one calibrated quantization method on a model
// (e.g. the generated 1B-shaped GGUF of make_synthetic_gguf), with random calibration
// tokens so that models without a tokenizer can be measured:
//   lowbit_method_cost MODEL METHOD [PRESET=Q4_K_M] [WINDOWS=8] [CTX=256] [THREADS=2]
//   [AWQ_SUB_PASSES=4]
//                      [STEPS=200] [BLOCKS=0]
// METHOD: rtn | imatrix | gptq | awq | awq+gptq | adaround | adaquant | autoround;
// AWQ_SUB_PASSES as --awq-sub-passes (0 = off); STEPS: learned rounding's steps per block;
// BLOCKS: stop after this many blocks (0: all), for models too large to train whole.
// One method per process, so the peak RSS (getrusage) is the method's own. Nothing is written.
#include <fmt/core.h>
#include <sys/resource.h>

#include <chrono>
#include <random>
#include <string>

#include "lowbit/calibration.h"
#include "lowbit/error.h"
#include "lowbit/model.h"
#include "lowbit/quant.h"
#include "lowbit/quantize.h"
#include "lowbit/sequential.h"

namespace {

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024.0;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace lowbit;
  try {
    if (argc < 3)
      fail(ErrorKind::Argument,
           "usage: lowbit_method_cost MODEL METHOD [PRESET] [WINDOWS] [CTX] [THREADS] "
           "[AWQ_SUB_PASSES]");
    const std::string method = argv[2], preset = argc > 3 ? argv[3] : "Q4_K_M";
    const size_t windows = argc > 4 ? std::stoul(argv[4]) : 8,
                 ctx = argc > 5 ? std::stoul(argv[5]) : 256;
    const int threads = argc > 6 ? std::stoi(argv[6]) : 2;
    const int awq_sub_passes = argc > 7 ? std::stoi(argv[7]) : SequentialOptions{}.awq_sub_passes;
    const int steps = argc > 8 ? std::stoi(argv[8]) : 200;
    const uint32_t max_blocks = argc > 9 ? std::stoul(argv[9]) : 0;
    const auto t0 = std::chrono::steady_clock::now();
    const Model m = load_model(argv[1]);
    std::mt19937 rng(1);
    std::vector<int32_t> tokens(windows * ctx * 4);
    for (auto& t : tokens) t = static_cast<int32_t>(rng() % m.config.n_vocab);
    QuantizePlanOptions po;
    po.preset = preset;
    po.has_importance = method != "rtn";  // the pipeline's mix for calibrated methods
    const auto plan = plan_quantization(m, po);
    std::vector<double> layer_seconds;
    if (method == "rtn" || method == "imatrix") {
      // Quantize every planned tensor in memory, one at a time on all threads, as the writer would.
      CalibrationStats stats;
      if (method == "imatrix") {
        CalibrationOptions co;
        co.n_samples = windows;
        co.n_ctx = ctx;
        co.n_threads = threads;
        stats = collect_calibration_stats(m, tokens, co);
      }
      for (const TensorPlan& p : plan) {
        const TensorView& t = m.tensor(p.name);
        if (traits(p.type).is_float) continue;
        const std::vector<float> x = to_f32(t);
        uint64_t bytes = 0;
        tensor_bytes(p.type, t.row_len(), t.n_values(), &bytes);
        std::vector<uint8_t> out(bytes);
        auto it = stats.by_weight.find(p.name);
        const std::vector<float> imp =
            it == stats.by_weight.end() ? std::vector<float>() : it->second.importance();
        quantize_rows(p.type, x.data(), t.shape[0], t.row_len(), imp.empty() ? nullptr : imp.data(),
                      threads, out.data());
      }
    } else {
      std::map<std::string, DType> types;
      for (const TensorPlan& p : plan) types[p.name] = p.type;
      SequentialOptions so;
      so.calib.n_samples = windows;
      so.calib.n_ctx = ctx;
      so.calib.n_threads = threads;
      so.gptq.act_order = false;
      so.gptq.damp = 0.1;
      so.gptq.n_threads = threads;
      so.awq = method == "awq" || method == "awq+gptq";
      so.gptq_rounding = method != "awq";
      so.awq_sub_passes = awq_sub_passes;
      for (LearnedMethod l :
           {LearnedMethod::AdaRound, LearnedMethod::AdaQuant, LearnedMethod::AutoRound})
        if (method == learned_method_name(l)) so.learn = LearnedOptions{l, steps};
      if (method != "gptq" && !so.awq && !so.learn)
        fail(ErrorKind::Argument, "unknown method '{}'", method);
      struct Enough {};  // thrown after max_blocks blocks
      so.on_layer = [&](uint32_t l, uint32_t n, double s) {
        fmt::print(stderr, "block {}/{}: {:.1f} s\n", l + 1, n, s);
        layer_seconds.push_back(s);
        if (max_blocks && l + 1 >= max_blocks) throw Enough{};
      };
      try {
        const SequentialResult r = quantize_sequential(m, tokens, types, so);
        fmt::print("activations kept: {:.1f} MiB\n", r.activation_bytes / 1048576.0);
      } catch (const Enough&) {
        fmt::print("stopped after {} of {} blocks\n", max_blocks, m.config.n_layer);
      }
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double mean_layer = 0;
    for (double s : layer_seconds) mean_layer += s / layer_seconds.size();
    fmt::print("{} {} {}x{}: {:.1f} s total, {:.1f} s per block, peak RSS {:.0f} MB\n", method,
               preset, windows, ctx, secs, mean_layer, peak_rss_mb());
    return 0;
  } catch (const Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
}
