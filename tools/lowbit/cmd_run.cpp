// lowbit run MODEL -p PROMPT -n N [--temp T --top-k K --top-p P --seed S] [--tokenizer T]
#include <fmt/core.h>

#include <chrono>

#include "commands.h"
#include "lowbit/generate.h"
#include "lowbit/model.h"

namespace lowbit::cli {

Action add_run(CLI::App& app) {
  struct Opts {
    std::string model, prompt, tokenizer;
    GenerateOptions gen;
    int threads = 2;
    bool no_bos = false;
  };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand("run", "Generate text from a prompt (streams to stdout)");
  c->add_option("model", o->model, "model directory, .gguf file or llama2.c .bin")->required();
  c->add_option("-p,--prompt", o->prompt, "prompt text (empty: start from BOS)");
  c->add_option("-n,--n-predict", o->gen.n_predict, "tokens to generate")->capture_default_str();
  c->add_option("--temp", o->gen.sampler.temperature, "temperature; 0 is greedy")->capture_default_str();
  c->add_option("--top-k", o->gen.sampler.top_k, "sample from the k most likely tokens (0: all)")->capture_default_str();
  c->add_option("--top-p", o->gen.sampler.top_p, "nucleus sampling mass")->capture_default_str();
  c->add_option("--seed", o->gen.sampler.seed, "random seed")->capture_default_str();
  c->add_option("-t,--threads", o->threads, "threads")->capture_default_str();
  c->add_option("--tokenizer", o->tokenizer, "llama2.c tokenizer .bin");
  c->add_flag("--ignore-eos", [o](int64_t) { o->gen.stop_at_eos = false; }, "keep generating after EOS");
  return [o]() {
    Model m = load_model(o->model, {o->tokenizer});
    auto tok = Tokenizer::create(m.vocab, o->model);
    Engine engine(m, {o->threads, 0});
    auto prompt = tok->encode(o->prompt, true);
    if (prompt.empty()) prompt.push_back(m.vocab.bos);
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
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fmt::print("\n");
    fmt::print(stderr, "[{} prompt + {} generated tokens, {:.1f} tokens/s]\n", prompt.size(), out.size(), out.size() / secs);
    return 0;
  };
}

}  // namespace lowbit::cli
