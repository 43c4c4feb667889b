// lowbit sweep MODEL --calib TEXT -f EVAL_TEXT -o DIR [--bpw 2.5:6.5:0.5] [--presets Q2_K,...]
//                    [--method rtn|imatrix|gptq|awq|awq+gptq] [--chunks 40]
// Quantizes the model at several size budgets (budget mixes) and with the fixed presets,
// evaluates each against the unquantized model, and writes DIR/sweep.csv and DIR/sweep.svg
// (mean KLD against bits per weight).
#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "commands.h"
#include "lowbit/engine.h"
#include "lowbit/error.h"
#include "lowbit/eval.h"
#include "lowbit/file_io.h"
#include "lowbit/tokenizer.h"
#include "lowbit/job.h"
#include "quantize_flags.h"

namespace lowbit::cli {
namespace {

struct SweepPoint {
  std::string kind, name;  // "mix" / "preset"
  double bpw = 0;
  uint64_t bytes = 0;
  double ppl = 0, kld = 0, top1 = 0;
};

std::vector<double> parse_range(const std::string& spec) {
  double a = 0, b = 0, step = 0;
  char c1 = 0, c2 = 0;
  std::istringstream in(spec);
  if (!(in >> a >> c1 >> b >> c2 >> step) || c1 != ':' || c2 != ':' || !(step > 0) || b < a ||
      !(a > 0))
    fail(ErrorKind::Argument, "--bpw '{}': expected FROM:TO:STEP, e.g. 2.5:6.5:0.5", spec);
  std::vector<double> out;
  for (int i = 0; a + i * step <= b + 1e-9; ++i) out.push_back(a + i * step);
  return out;
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

// KLD (log scale) against bits per weight: the budget mixes as a line, the presets as labelled
// dots.
std::string plot_svg(const std::vector<SweepPoint>& pts, const std::string& title) {
  const double W = 720, H = 460, L = 70, R = 20, T = 40, B = 50;
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const auto& p : pts) {
    x0 = std::min(x0, p.bpw), x1 = std::max(x1, p.bpw);
    y0 = std::min(y0, std::log10(std::max(p.kld, 1e-7))),
    y1 = std::max(y1, std::log10(std::max(p.kld, 1e-7)));
  }
  x0 = std::floor(x0), x1 = std::ceil(x1), y0 = std::floor(y0), y1 = std::ceil(y1);
  if (x1 <= x0) x1 = x0 + 1;
  if (y1 <= y0) y1 = y0 + 1;
  auto X = [&](double v) { return L + (v - x0) / (x1 - x0) * (W - L - R); };
  auto Y = [&](double kld) {
    return T + (y1 - std::log10(std::max(kld, 1e-7))) / (y1 - y0) * (H - T - B);
  };
  std::string s = fmt::format(R"(<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}")"
                              R"( font-family="sans-serif" font-size="12">)"
                              "\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
                              W, H);
  s += fmt::format("<text x=\"{}\" y=\"22\" font-size=\"15\">{}</text>\n", L, title);
  for (double x = x0; x <= x1 + 1e-9; x += 1)
    s += fmt::format(
        "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#ddd\"/><text x=\"{0}\" "
        "y=\"{3}\" text-anchor=\"middle\">{4:g}</text>\n",
        X(x), T, H - B, H - B + 18, x);
  for (double y = y0; y <= y1 + 1e-9; y += 1)
    s += fmt::format(
        "<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"#ddd\"/><text x=\"{3}\" "
        "y=\"{4}\" text-anchor=\"end\">1e{5:g}</text>\n",
        L, Y(std::pow(10, y)), W - R, L - 6, Y(std::pow(10, y)) + 4, y);
  s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">bits per weight</text>\n",
                   (L + W - R) / 2, H - 12);
  s += fmt::format(
      "<text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">mean KLD vs "
      "unquantized (log)</text>\n",
      (T + H - B) / 2, (T + H - B) / 2);
  std::string line;
  for (const auto& p : pts)
    if (p.kind == "mix")
      line += fmt::format("{}{:.1f},{:.1f}", line.empty() ? "" : " ", X(p.bpw), Y(p.kld));
  s += fmt::format(
      "<polyline points=\"{}\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\"/>\n", line);
  for (const auto& p : pts) {
    const bool mix = p.kind == "mix";
    s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\" fill=\"{}\"/>\n", X(p.bpw),
                     Y(p.kld), mix ? "#1f77b4" : "#ff7f0e");
    if (!mix)
      s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" fill=\"#b35900\">{}</text>\n", X(p.bpw) + 6,
                       Y(p.kld) - 6, p.name);
  }
  s += fmt::format(
      "<circle cx=\"{0}\" cy=\"{1}\" r=\"4\" fill=\"#1f77b4\"/><text x=\"{2}\" y=\"{3}\">lowbit "
      "budget mix</text>\n"
      "<circle cx=\"{0}\" cy=\"{4}\" r=\"4\" fill=\"#ff7f0e\"/><text x=\"{2}\" y=\"{5}\">fixed "
      "preset</text>\n",
      W - 170, T + 10, W - 160, T + 14, T + 28, T + 32);
  return s + "</svg>\n";
}

}  // namespace

Action add_sweep(CLI::App& app) {
  struct Opts {
    QuantizeJob job;  // model, calibration, method, threads; the target changes per point
    GgufTarget gguf;  // the sensitivity settings
    std::string method = "rtn";
    bool quiet = false;
    std::string eval_text, out_dir, bpw = "2.5:6.5:0.5",
                                    presets = "Q2_K,Q3_K_S,Q3_K_M,Q4_K_S,Q4_K_M,Q5_K_M,Q6_K,Q8_0";
    uint32_t ctx = 512;
    size_t chunks = 40;
    bool keep = false;
  };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand(
      "sweep",
      "Budget mixes and presets at several sizes: size, PPL, KLD, top-1 -> CSV + SVG plot");
  c->add_option("model", o->job.model, "model directory, .gguf file or llama2.c .bin")->required();
  c->add_option("--calib", o->job.calib.text,
                "calibration text (sensitivity, and the calibrated methods)")
      ->required();
  add_calibration_source_flags(c, o->job.calib);
  add_calib_kernels_flag(c, o->job.calib);
  c->add_option("-f,--file", o->eval_text, "evaluation text (e.g. WikiText-2 test)")->required();
  c->add_option("-o,--output", o->out_dir, "directory for sweep.csv and sweep.svg")->required();
  c->add_option("--bpw", o->bpw, "budgets FROM:TO:STEP in bits per weight")->capture_default_str();
  c->add_option("--presets", o->presets, "comma-separated presets to compare (empty: none)")
      ->capture_default_str();
  c->add_option("--method", o->method,
                "rtn, imatrix, gptq, awq or awq+gptq (for mixes and presets alike)")
      ->check(CLI::IsMember({"rtn", "imatrix", "gptq", "awq", "awq+gptq"}))
      ->capture_default_str();
  add_sensitivity_flags(c, o->gguf.sensitivity);
  c->add_option("--ctx", o->ctx, "evaluation window")->capture_default_str();
  c->add_option("--chunks", o->chunks, "evaluation windows")->capture_default_str();
  add_threads_option(c, o->job.threads);
  c->add_flag("--keep", o->keep, "keep the quantized files in DIR");
  c->add_flag("-q,--quiet", o->quiet, "no progress");
  return [o]() {
    const std::vector<double> budgets = parse_range(o->bpw);
    const std::vector<std::string> presets = split_list(o->presets);
    for (const auto& p : presets) require_preset(p);
    QuantizeJob job = o->job;
    job.method.kind = *method_from_name(o->method);
    job.target = o->gguf;
    for (const std::string& in : {job.model, o->eval_text, job.calib.text})
      if (std::error_code ec; std::filesystem::equivalent(o->out_dir, in, ec))
        fail(ErrorKind::Argument, "{}: the output directory is the input {}", o->out_dir, in);
    std::filesystem::create_directories(o->out_dir);
    const Model m = load_model(job.model);
    const std::string base = o->out_dir + "/base.logits";
    {
      const auto tokens =
          Tokenizer::create(m.vocab, job.model)->encode(read_text_file(o->eval_text), true);
      Engine engine(m, {job.threads, o->ctx});
      PerplexityOptions po;
      po.n_ctx = o->ctx;
      po.max_chunks = o->chunks;
      po.save_logits = base;
      const double ppl = evaluate_perplexity(engine, tokens, po).ppl;
      if (!o->quiet)
        fmt::print(stderr, "unquantized: PPL {:.4f} over {} windows of {}\n", ppl, o->chunks,
                   o->ctx);
    }
    const std::vector<MixTensor> tensors =
        measure_job_sensitivity(m, job, progress_printer(o->quiet));
    {  // the sensitivities, reviewable: one row per (tensor, candidate type)
      std::string csv = "tensor,type,bytes,loss,proxy,measured_kld\n";
      for (const MixTensor& t : tensors)
        if (t.options.size() > 1)
          for (const MixOption& x : t.options)
            csv += fmt::format("{},{},{},{:.6g},{:.6g},{:.6g}\n", t.name, dtype_name(x.type),
                               x.bytes, x.loss, x.proxy, x.measured);
      write_file_atomic(o->out_dir + "/sensitivity.csv", csv);
      if (!o->quiet)
        fmt::print(stderr, "Hessian proxy vs measured KLD, rank correlation: {:.3f}\n",
                   proxy_rank_correlation(tensors));
    }

    std::vector<SweepPoint> points;
    auto run = [&](const std::string& kind, const std::string& name, const GgufTarget& target) {
      QuantizeJob point = job;
      point.target = target;
      point.output = o->out_dir + "/" + kind + "-" + name + ".gguf";
      const QuantizeReport r = run_quantize_job(m, point);
      const Model qm = load_model(point.output);
      Engine e(qm, {job.threads, std::max(o->ctx, qm.config.n_ctx)});
      PerplexityOptions po;
      po.kl_base = base;
      const PerplexityResult pr = evaluate_perplexity(e, {}, po);
      points.push_back(
          {kind, name, r.bits_per_weight, r.total_bytes, pr.ppl, pr.kld->mean, pr.kld->same_top1});
      if (!o->keep) std::filesystem::remove(point.output);
      if (!o->quiet)
        fmt::print(stderr,
                   "{:<6} {:<8} {:6.3f} bpw {:>10} B  PPL {:9.4f}  KLD {:.6f}  top-1 {:.2f}%\n",
                   kind, name, r.bits_per_weight, r.total_bytes, pr.ppl, pr.kld->mean,
                   100 * pr.kld->same_top1);
    };
    for (double bpw : budgets) {
      GgufTarget t;
      try {
        t.recipe = solve_job_budget(m, tensors, Budget{0, bpw});
      } catch (const Error& e) {
        fmt::print(stderr, "mix at {:g} bpw skipped: {}\n", bpw, e.what());
        continue;
      }
      run("mix", fmt::format("{:g}", bpw), t);
    }
    for (const std::string& p : presets) {
      GgufTarget t;
      t.type = p;
      run("preset", p, t);
    }
    std::string csv = "kind,name,bits_per_weight,tensor_bytes,ppl,kld_mean,same_top1\n";
    for (const auto& p : points)
      csv += fmt::format("{},{},{:.4f},{},{:.4f},{:.6f},{:.4f}\n", p.kind, p.name, p.bpw, p.bytes,
                         p.ppl, p.kld, p.top1);
    write_file_atomic(o->out_dir + "/sweep.csv", csv);
    write_file_atomic(
        o->out_dir + "/sweep.svg",
        plot_svg(points, fmt::format("{}: {} ({} windows of {} tokens)",
                                     std::filesystem::path(job.model).filename().string(),
                                     o->method, o->chunks, o->ctx)));
    std::filesystem::remove(base);
    fmt::print("{}", csv);
    return 0;
  };
}

}  // namespace lowbit::cli
