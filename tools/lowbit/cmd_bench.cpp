// lowbit bench MODEL | --synthetic llama-1b --type Q4_K_M  [-p 512] [-n 128] [-t 2] [-r 5] [--json]
// Prompt processing and generation tokens/s (mean ± sd over -r runs, like llama-bench), the
// machine's read bandwidth from a built-in probe, and how close generation comes to the
// bound that bandwidth sets.
#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "lowbit/error.h"
#include "lowbit/job.h"
#include "lowbit/threads.h"
#include "lowbit/kernels.h"
#include "lowbit/model.h"
#include "lowbit/speed.h"
#include "lowbit/synthetic.h"

namespace lowbit::cli {
namespace {

// "Q4_K_M" when the matrices follow a mix, else the one type all matrices share.
std::string type_summary(const Model& m) {
  std::map<std::string, uint64_t> bytes;
  for (const TensorView& t : m.tensors)
    if (t.shape.size() == 2) bytes[dtype_name(t.dtype)] += t.nbytes;
  std::string out;
  for (const auto& [name, b] : bytes)
    out += fmt::format("{}{} {:.0f} MB", out.empty() ? "" : ", ", name, b / 1e6);
  return out;
}

}  // namespace

Action add_bench(CLI::App& app) {
  struct Opts {
    std::string model, tokenizer, synthetic, type = "Q4_K_M";
    SpeedOptions speed;
    EngineFlags engine;
    size_t probe_mib = 1024;
    int probe_passes = 5;
    bool json = false, no_reference = false;
  };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand(
      "bench", "Prompt-processing and generation speed against the memory-bandwidth bound");
  c->add_option("model", o->model,
                "model directory, .gguf file or llama2.c .bin (or use --synthetic)");
  c->add_option("--synthetic", o->synthetic,
                "random weights with realistic shapes instead of a model: llama-1b, llama-8m");
  c->add_option("--type", o->type, "with --synthetic: a preset (Q4_K_M) or a type (Q8_0, F16)")
      ->capture_default_str();
  c->add_option("-p,--n-prompt", o->speed.n_prompt,
                "prompt tokens processed in one batch (0: skip)")
      ->capture_default_str();
  c->add_option("-n,--n-gen", o->speed.n_gen, "tokens generated one at a time (0: skip)")
      ->capture_default_str();
  c->add_option("-r,--repetitions", o->speed.repetitions, "timed runs of each test")
      ->capture_default_str();
  c->add_option("--probe-mib", o->probe_mib, "bandwidth probe buffer in MiB")
      ->capture_default_str();
  c->add_option("--probe-passes", o->probe_passes, "bandwidth probe passes (the best counts)")
      ->capture_default_str();
  c->add_option("--tokenizer", o->tokenizer, "llama2.c tokenizer .bin");
  c->add_flag("--no-reference", o->no_reference,
              "skip the fp32 reference engine's prompt-processing run");
  c->add_flag("--json", o->json, "print the results as JSON on stdout");
  add_engine_flags(c, o->engine, "fast");
  return [o]() {
    o->engine.threads = resolve_threads(o->engine.threads);
    if (o->model.empty() == o->synthetic.empty())
      fail(ErrorKind::Argument, "bench: give a MODEL or --synthetic SHAPE (not both)");
    if (o->speed.repetitions < 1)
      fail(ErrorKind::Argument, "bench: -r {}: at least one repetition", o->speed.repetitions);
    Model m;
    std::string label;
    if (!o->synthetic.empty()) {
      m = make_synthetic_quantized(synthetic_shape(o->synthetic), o->type, 1);
      label = fmt::format("synthetic {} {}", o->synthetic, o->type);
    } else {
      m = prepare_model(load_model(o->model, {o->tokenizer}), o->engine);
      label = o->model + (o->engine.quantize.empty() ? "" : " --quantize " + o->engine.quantize);
    }
    o->speed.engine = engine_options(o->engine, 0);
    const uint64_t model_bytes = [&] {
      uint64_t b = 0;
      for (const TensorView& t : m.tensors) b += t.nbytes;
      return b;
    }();
    const uint64_t per_token = weight_bytes_per_token(m);
    const std::string isa = o->speed.engine.fast ? kernels::active_isa() : "reference (fp32, BLAS)";
    if (!o->json) {
      fmt::print("model   {}: {:.3f} GB, {:.3f} B weights, {:.2f} bits/weight\n", label,
                 model_bytes / 1e9, count_weights(m) / 1e9, 8.0 * model_bytes / count_weights(m));
      fmt::print("types   {}\n", type_summary(m));
      fmt::print("engine  {} kernels, {}, {} threads\n", o->engine.kernels, isa, o->engine.threads);
      std::fflush(stdout);
    }
    const BandwidthProbe probe =
        measure_read_bandwidth(o->probe_mib << 20, o->engine.threads, o->probe_passes);
    const SpeedResult r = measure_speed(m, o->speed);
    double ref_pp = 0;
    if (!o->no_reference && o->speed.engine.fast && o->speed.n_prompt) {
      SpeedOptions ref = o->speed;
      ref.engine.fast = false;
      ref.n_gen = 0;
      ref.repetitions = 1;
      ref_pp = measure_speed(m, ref).pp_tps;
    }
    const double bound = probe.best_gbs * 1e9 / per_token;
    const double tg_gbs = r.tg_tps * per_token / 1e9;
    if (o->json) {
      nlohmann::json j = {{"model", label},
                          {"types", type_summary(m)},
                          {"model_bytes", model_bytes},
                          {"weight_bytes_per_token", per_token},
                          {"n_weights", count_weights(m)},
                          {"threads", o->engine.threads},
                          {"kernels", o->engine.kernels},
                          {"isa", isa},
                          {"n_prompt", o->speed.n_prompt},
                          {"n_gen", o->speed.n_gen},
                          {"repetitions", o->speed.repetitions},
                          {"pp_tps", r.pp_tps},
                          {"pp_sd", r.pp_sd},
                          {"tg_tps", r.tg_tps},
                          {"tg_sd", r.tg_sd},
                          {"pp_runs", r.pp_runs},
                          {"tg_runs", r.tg_runs},
                          {"bandwidth_gbs", probe.best_gbs},
                          {"probe_bytes", probe.bytes},
                          {"tg_bandwidth_gbs", tg_gbs},
                          {"tg_bound_tps", bound},
                          {"tg_bandwidth_fraction", r.tg_tps / bound},
                          {"reference_pp_tps", ref_pp}};
      fmt::print("{}\n", j.dump(2));
      return 0;
    }
    fmt::print("\n| test   |          t/s |\n|--------|--------------|\n");
    if (o->speed.n_prompt)
      fmt::print("| pp{:<4} | {:7.2f} ± {:.2f} |\n", o->speed.n_prompt, r.pp_tps, r.pp_sd);
    if (o->speed.n_gen)
      fmt::print("| tg{:<4} | {:7.2f} ± {:.2f} |\n", o->speed.n_gen, r.tg_tps, r.tg_sd);
    if (ref_pp > 0)
      fmt::print("\nprompt processing: {:.2f} t/s fast vs {:.2f} t/s fp32 reference ({:.2f}x)\n",
                 r.pp_tps, ref_pp, r.pp_tps / ref_pp);
    fmt::print("\nread bandwidth (probe: {} MiB, {} threads, best of {}): {:.2f} GB/s\n",
               o->probe_mib, probe.n_threads, probe.passes, probe.best_gbs);
    if (o->speed.n_gen)
      fmt::print(
          "generation reads {:.3f} GB per token: bound {:.2f} t/s; measured {:.2f} t/s = {:.0f}% "
          "of the bound ({:.2f} GB/s)\n",
          per_token / 1e9, bound, r.tg_tps, 100 * r.tg_tps / bound, tg_gbs);
    return 0;
  };
}

}  // namespace lowbit::cli
