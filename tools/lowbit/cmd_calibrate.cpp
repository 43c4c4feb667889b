// lowbit calibrate MODEL --calib TEXT -o STATS.gguf [--calib-samples 128] [--calib-ctx 512] [--seed 1] [--hessian]
#include <fmt/core.h>

#include <filesystem>

#include "commands.h"
#include "lowbit/calibration.h"
#include "lowbit/error.h"
#include "lowbit/file_io.h"
#include "lowbit/model.h"

namespace lowbit::cli {

CalibrationStats calibrate_from_text(const Model& m, const std::string& model_path, const CalibrationFlags& f, bool quiet,
                                     bool hessian) {
  const auto tokens = Tokenizer::create(m.vocab, model_path)->encode(read_text_file(f.text), false);
  CalibrationOptions o;
  o.n_samples = f.samples;
  o.n_ctx = f.ctx;
  o.seed = f.seed;
  o.n_threads = f.threads;
  o.hessian = hessian;
  if (!quiet)
    o.on_window = [](size_t i, size_t n) {
      fmt::print(stderr, "\rcalibrating: window {}/{}", i, n);
      if (i == n) fmt::print(stderr, "\n");
    };
  CalibrationStats s = collect_calibration_stats(m, tokens, o);
  s.dataset = std::filesystem::path(f.text).filename().string();
  return s;
}

void add_calibration_flags(CLI::App* c, CalibrationFlags& f) {
  c->add_option("--calib-samples", f.samples, "calibration windows")->capture_default_str();
  c->add_option("--calib-ctx", f.ctx, "tokens per calibration window")->capture_default_str();
  c->add_option("--seed", f.seed, "seed of the window offsets")->capture_default_str();
}

Action add_calibrate(CLI::App& app) {
  struct Opts { std::string model, out, tokenizer; CalibrationFlags calib; bool quiet = false, hessian = false; };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand("calibrate", "Collect per-layer input statistics (an importance matrix) from calibration text");
  c->add_option("model", o->model, "model directory, .gguf file or llama2.c .bin")->required();
  c->add_option("--calib", o->calib.text, "calibration text (plain UTF-8)")->required();
  c->add_option("-o,--output", o->out, "statistics file (GGUF imatrix)")->required();
  add_calibration_flags(c, o->calib);
  c->add_option("-t,--threads", o->calib.threads, "threads")->capture_default_str();
  c->add_option("--tokenizer", o->tokenizer, "llama2.c tokenizer .bin");
  c->add_flag("--hessian", o->hessian, "also save mean x xT of every linear input (cols^2 floats per weight), for quantize --method gptq --stats");
  c->add_flag("-q,--quiet", o->quiet, "no progress");
  return [o]() {
    Model m = load_model(o->model, {o->tokenizer});
    const CalibrationStats s = calibrate_from_text(m, o->model, o->calib, o->quiet, o->hessian);
    write_calibration_stats(s, o->out);
    if (!o->quiet)
      fmt::print(stderr, "wrote {}: {} weights, {} windows of {} tokens\n", o->out, s.by_weight.size(), s.n_windows, s.window_len);
    return 0;
  };
}

}  // namespace lowbit::cli
