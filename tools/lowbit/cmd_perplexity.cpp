// lowbit perplexity MODEL -f TEXT [--ctx 512] [--chunks N] [--batch B] [--protocol llama|hf]
//                  [--save-logits FILE [--save-top-k K]] [--kl-divergence FILE] [--json]
#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "lowbit/error.h"
#include "lowbit/eval.h"
#include "lowbit/file_io.h"
#include "lowbit/model.h"

namespace lowbit::cli {
namespace {

void print_kld(const KldStats& k) {
  fmt::print("\n====== KL divergence vs base ({} positions) ======\n", k.n);
  fmt::print("Mean PPL(Q)/PPL(base)  : {:10.6f}   (PPL base {:.4f})\n", k.ppl_ratio, k.ppl_base);
  fmt::print("Mean    KLD: {:10.6f} ± {:10.6f}\n", k.mean, k.stderr_);
  fmt::print("Maximum KLD: {:10.6f}\n", k.max);
  fmt::print("99.9%   KLD: {:10.6f}\n", k.p999);
  fmt::print("99.0%   KLD: {:10.6f}\n", k.p99);
  fmt::print("95.0%   KLD: {:10.6f}\n", k.p95);
  fmt::print("90.0%   KLD: {:10.6f}\n", k.p90);
  fmt::print("Median  KLD: {:10.6f}\n", k.median);
  fmt::print("Mean    Δp : {:8.4f} ± {:.4f} %\n", 100 * k.dp_mean, 100 * k.dp_stderr);
  fmt::print("RMS     Δp : {:8.4f} %\n", 100 * k.dp_rms);
  fmt::print("99%     Δp : {:8.4f} %\n", 100 * k.dp_p99);
  fmt::print("95%     Δp : {:8.4f} %\n", 100 * k.dp_p95);
  fmt::print("Median  Δp : {:8.4f} %\n", 100 * k.dp_median);
  fmt::print("5%      Δp : {:8.4f} %\n", 100 * k.dp_p05);
  fmt::print("1%      Δp : {:8.4f} %\n", 100 * k.dp_p01);
  fmt::print("Same top p : {:8.4f} %\n", 100 * k.same_top1);
}

}  // namespace

Action add_perplexity(CLI::App& app) {
  struct Opts {
    std::string model, file, tokenizer, protocol = "llama";
    PerplexityOptions p;
    EngineFlags engine;
    bool json = false, quiet = false;
  };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand("perplexity", "Perplexity and KL divergence on a text file");
  c->add_option("model", o->model, "model directory, .gguf file or llama2.c .bin")->required();
  c->add_option("-f,--file", o->file, "text to evaluate (not needed with --kl-divergence)");
  c->add_option("--ctx", o->p.n_ctx, "window length in tokens")->capture_default_str();
  c->add_option("--chunks", o->p.max_chunks, "evaluate at most this many windows (0: all)")
      ->capture_default_str();
  c->add_option("--batch", o->p.batch, "tokens per forward call")->capture_default_str();
  c->add_option("--protocol", o->protocol,
                "llama (llama.cpp: BOS per window, second half scored) or hf (GPTQ/AWQ papers)")
      ->check(CLI::IsMember({"llama", "hf"}))
      ->capture_default_str();
  c->add_option("--save-logits", o->p.save_logits,
                "store this model's distributions for later --kl-divergence");
  c->add_option("--save-top-k", o->p.save_top_k,
                "with --save-logits: keep only the top k (0: full, f16)")
      ->capture_default_str();
  c->add_option("--kl-divergence", o->p.kl_base,
                "compare with distributions saved by --save-logits");
  add_engine_flags(c, o->engine, "fast");
  c->add_option("--tokenizer", o->tokenizer, "llama2.c tokenizer .bin");
  c->add_flag("--json", o->json, "print the results as JSON on stdout");
  c->add_flag("-q,--quiet", o->quiet, "no progress on stderr");
  return [o]() {
    if (o->file.empty() && o->p.kl_base.empty())
      fail(ErrorKind::Argument, "perplexity: give a text with -f (or --kl-divergence FILE)");
    o->p.protocol = o->protocol == "hf" ? PplProtocol::Hf : PplProtocol::LlamaCpp;
    if (!o->p.save_logits.empty())
      check_output_path(o->p.save_logits, {o->model, o->tokenizer, o->file, o->p.kl_base});
    const Model m = prepare_model(load_model(o->model, {o->tokenizer}), o->engine);
    std::vector<int32_t> tokens;
    if (!o->file.empty())
      tokens = Tokenizer::create(m.vocab, o->model)->encode(read_text_file(o->file), true);
    Engine engine(m, engine_options(o->engine, o->p.n_ctx));
    if (!o->quiet)
      o->p.on_chunk = [o](size_t c, size_t n, double ppl, double tps) {
        const double eta = tps > 0 ? (n - c) * o->p.n_ctx / tps : 0;
        fmt::print(stderr, "\r{} {}/{} chunks  PPL {:.4f}  {:.0f} tok/s  ETA {:.0f}s ",
                   progress_bar(c, n), c, n, ppl, tps, eta);
        if (c == n) fmt::print(stderr, "\n");
      };
    PerplexityResult r = evaluate_perplexity(engine, tokens, o->p);
    if (o->json) {
      nlohmann::json j = {{"ppl", r.ppl},           {"ppl_stderr", r.ppl_stderr},
                          {"n_tokens", r.n_tokens}, {"n_chunks", r.n_chunks},
                          {"seconds", r.seconds},   {"chunk_ppl", r.chunk_ppl}};
      if (r.kld) {
        const KldStats& k = *r.kld;
        j.update({{"kld_mean", k.mean},
                  {"kld_stderr", k.stderr_},
                  {"kld_median", k.median},
                  {"kld_p90", k.p90},
                  {"kld_p95", k.p95},
                  {"kld_p99", k.p99},
                  {"kld_p999", k.p999},
                  {"kld_max", k.max},
                  {"same_top1", k.same_top1},
                  {"dp_mean", k.dp_mean},
                  {"dp_rms", k.dp_rms},
                  {"ppl_base", k.ppl_base},
                  {"ppl_ratio", k.ppl_ratio}});
      }
      fmt::print("{}\n", j.dump(2));
      return 0;
    }
    for (size_t i = 0; i < r.chunk_ppl.size(); ++i)
      fmt::print("[{}]{:.4f},", i + 1, r.chunk_ppl[i]);
    fmt::print("\nFinal estimate: PPL = {:.4f} +/- {:.5f}  ({} tokens scored, {:.1f}s)\n", r.ppl,
               r.ppl_stderr, r.n_tokens, r.seconds);
    if (r.kld) print_kld(*r.kld);
    return 0;
  };
}

}  // namespace lowbit::cli
