// lowbit calibrate MODEL --calib TEXT -o STATS.gguf [--calib-samples 128] [--calib-ctx 512] [--seed
// 1] [--hessian]
// Under `mpirun -np N` the ranks share the windows (lowbit/distributed.h).
#include <fmt/core.h>

#include "commands.h"
#include "lowbit/calibration.h"
#include "lowbit/distributed.h"
#include "lowbit/file_io.h"
#include "lowbit/model.h"
#include "quantize_flags.h"

namespace lowbit::cli {

Action add_calibrate(CLI::App& app) {
  struct Opts {
    std::string model, out, tokenizer;
    CalibrationSource calib;
    int threads = 0;
    bool quiet = false, hessian = false;
  };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand(
      "calibrate",
      "Collect per-layer input statistics (an importance matrix) from calibration text");
  c->add_option("model", o->model, "model directory, .gguf file or llama2.c .bin")->required();
  c->add_option("--calib", o->calib.text, "calibration text (plain UTF-8)")->required();
  c->add_option("-o,--output", o->out, "statistics file (GGUF imatrix)")->required();
  add_calibration_source_flags(c, o->calib);
  add_threads_option(c, o->threads);
  c->add_option("--tokenizer", o->tokenizer, "llama2.c tokenizer .bin");
  c->add_flag("--hessian", o->hessian,
              "also save mean x xT of every linear input (cols^2 floats per weight), for quantize "
              "--method gptq --stats");
  c->add_flag("-q,--quiet", o->quiet, "no progress");
  return [o]() {
    check_output_path(o->out, {o->model, o->tokenizer, o->calib.text});
    Model m = load_model(o->model, {o->tokenizer});
    CalibrationOptions co;
    co.n_samples = o->calib.samples;
    co.n_ctx = o->calib.ctx;
    co.seed = o->calib.seed;
    co.n_threads = o->threads;
    co.hessian = o->hessian;
    const Observer progress = progress_printer(o->quiet || !dist::is_root());
    co.on_window = [&](size_t i, size_t n) { report_progress(progress, {Stage::Calibrate, i, n}); };
    stop_on_signals();
    // Under mpirun every rank measures its share of the windows and rank 0 writes the sums.
    const CalibrationStats s = collect_calibration_stats(m, o->calib.text, co);
    if (!dist::is_root()) return 0;
    write_calibration_stats(s, o->out);
    if (!o->quiet)
      fmt::print(stderr, "wrote {}: {} weights, {} windows of {} tokens\n", o->out,
                 s.by_weight.size(), s.n_windows, s.window_len);
    return 0;
  };
}

}  // namespace lowbit::cli
