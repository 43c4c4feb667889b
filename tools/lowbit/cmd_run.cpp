// lowbit run MODEL -p PROMPT -n N [--temp T --top-k K --top-p P --seed S] [--tokenizer T]
//            [--quantize Q8_0|Q4_K|PRESET] [--kernels fast|reference] [--cache-type-k/-v TYPE]
#include <fmt/core.h>

#include <chrono>

#include "commands.h"
#include "lowbit/error.h"
#include "lowbit/generate.h"
#include "lowbit/kernels.h"
#include "lowbit/model.h"
#include "lowbit/quantize.h"
#include "lowbit/threads.h"

namespace lowbit::cli {

void add_threads_option(CLI::App* c, int& threads) {
  c->add_option("-t,--threads", threads, "threads (0: all cores)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber)
      ->transform([](std::string s) {
        if (std::stod(s) > max_threads()) {
          fmt::print(stderr, "note: -t {} is more than this machine can use; running {} threads\n",
                     s, max_threads());
          s = std::to_string(max_threads());
        }
        return s;
      });
}

void add_rounding_flags(CLI::App* c, RoundingFlags& f) {
  c->add_option("--cache-type-k", f.cache_k, "KV cache type of keys: " + kv_cache_type_names())
      ->capture_default_str();
  c->add_option("--cache-type-v", f.cache_v, "KV cache type of values (as keys)")
      ->capture_default_str();
  c->add_flag("--rotate-kv", f.rotate_kv,
              "rotate q and k of every head by a Hadamard transform after RoPE (same scores; "
              "keys without outlier channels for a quantized cache)");
  c->add_option("--act-bits", f.act_bits,
                "simulate activation quantization: every linear input but the head's rounded "
                "per token to this many bits (0: off, 2..8)")
      ->capture_default_str();
  c->add_option("--act-clip", f.act_clip,
                "with --act-bits: the rounding scale covers this fraction of max|x| (0, 1]")
      ->capture_default_str();
  c->add_option("--act-ranges", f.act_ranges,
                "with --act-bits: dynamic (each token's max|x|) or static (one range per linear "
                "input, from the file; quantize --method qat tracks them)")
      ->check(CLI::IsMember({"dynamic", "static"}))
      ->capture_default_str();
}

ActivationRounding activation_rounding(const RoundingFlags& f) {
  ActivationRounding r;
  r.cache_type_k = kv_cache_type(f.cache_k, "--cache-type-k");
  r.cache_type_v = kv_cache_type(f.cache_v, "--cache-type-v");
  r.rotate_kv = f.rotate_kv;
  r.act_bits = f.act_bits;
  r.act_clip = f.act_clip;
  r.static_ranges = f.act_ranges == "static";
  return r;
}

void add_engine_flags(CLI::App* c, EngineFlags& f, const std::string& default_kernels) {
  f.kernels = default_kernels;
  add_threads_option(c, f.threads);
  c->add_option("--kernels", f.kernels,
                "fast (integer dot products on 8-bit activations, SIMD) or reference (fp32, BLAS)")
      ->check(CLI::IsMember({"fast", "reference"}))
      ->capture_default_str();
  c->add_option("--blas-batch", f.blas_batch,
                "fast kernels: batches of at least N tokens multiply dequantized weight tiles with "
                "BLAS; 0: always the integer kernels")
      ->capture_default_str();
  c->add_option("--packed-batch", f.packed_batch,
                "fast kernels, AVX-512 VNNI: batches of at least N tokens use weights repacked in "
                "int8 panels (before --blas-batch); 0: never")
      ->capture_default_str();
  add_rounding_flags(c, f.rounding);
  c->add_option(
      "--quantize", f.quantize,
      "quantize the weights in memory at load time: a preset (Q4_K_M) or a type (Q8_0, Q4_K)");
}

EngineOptions engine_options(const EngineFlags& f, uint32_t n_ctx) {
  EngineOptions o;
  o.n_threads = f.threads;
  o.n_ctx = n_ctx;
  o.fast = f.kernels == "fast";
  o.blas_batch = f.blas_batch;
  o.packed_batch = f.packed_batch;
  o.rounding = activation_rounding(f.rounding);
  return o;
}

Model prepare_model(Model m, const EngineFlags& f) {
  if (f.quantize.empty()) return m;
  const auto t0 = std::chrono::steady_clock::now();
  Model q = quantize_model_in_memory(m, plan_for_type_or_preset(f.quantize), f.threads);
  fmt::print(stderr, "[quantized in memory to {} in {:.1f} s]\n", f.quantize,
             std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return q;
}

Action add_run(CLI::App& app) {
  struct Opts {
    std::string model, prompt, tokenizer;
    GenerateOptions gen;
    EngineFlags engine;
    bool no_bos = false;
  };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand("run", "Generate text from a prompt (streams to stdout)");
  c->add_option("model", o->model, "model directory, .gguf file or llama2.c .bin")->required();
  c->add_option("-p,--prompt", o->prompt, "prompt text (empty: start from BOS)");
  c->add_option("-n,--n-predict", o->gen.n_predict, "tokens to generate")->capture_default_str();
  c->add_option("--temp", o->gen.sampler.temperature, "temperature; 0 is greedy")
      ->capture_default_str();
  c->add_option("--top-k", o->gen.sampler.top_k, "sample from the k most likely tokens (0: all)")
      ->capture_default_str();
  c->add_option("--top-p", o->gen.sampler.top_p, "nucleus sampling mass")->capture_default_str();
  c->add_option("--seed", o->gen.sampler.seed, "random seed")->capture_default_str();
  add_engine_flags(c, o->engine, "fast");
  c->add_option("--tokenizer", o->tokenizer, "llama2.c tokenizer .bin");
  c->add_flag(
      "--ignore-eos", [o](int64_t) { o->gen.stop_at_eos = false; }, "keep generating after EOS");
  return [o]() {
    const Model m = prepare_model(load_model(o->model, {o->tokenizer}), o->engine);
    auto tok = Tokenizer::create(m.vocab, o->model);
    auto prompt = tok->encode(o->prompt, true);
    if (prompt.empty()) prompt.push_back(m.vocab.bos);
    Engine engine(
        m, engine_options(o->engine, generation_context(m, prompt.size(), o->gen.n_predict)));
    fmt::print("{}", o->prompt);
    std::vector<int32_t> shown = prompt;  // decode with context so leading spaces come out right
    std::string printed = tok->decode(prompt);
    const auto t0 = std::chrono::steady_clock::now();
    auto out = generate(engine, prompt, o->gen, [&](int32_t id) {
      shown.push_back(id);
      std::string text = tok->decode(shown);
      fmt::print("{}", text.substr(std::min(printed.size(), text.size())));
      std::fflush(stdout);
      printed = std::move(text);
    });
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fmt::print("\n");
    fmt::print(stderr, "[{} prompt + {} generated tokens, {:.1f} tokens/s]\n", prompt.size(),
               out.size(), out.size() / secs);
    return 0;
  };
}

}  // namespace lowbit::cli
