// lowbit tokenize MODEL (-p TEXT | -f FILE) [--json] [--no-bos] [--parse-special]
#include <fmt/core.h>
#include <fmt/ranges.h>

#include "commands.h"
#include "lowbit/error.h"
#include "lowbit/file_io.h"
#include "lowbit/model.h"

namespace lowbit::cli {

Action add_tokenize(CLI::App& app) {
  struct Opts {
    std::string model, prompt, file, tokenizer;
    bool json = false, no_bos = false, parse_special = false;
  };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand("tokenize", "Print the token ids of a text");
  c->add_option("model", o->model, "model directory, .gguf file or llama2.c .bin")->required();
  auto* p = c->add_option("-p,--prompt", o->prompt, "text to tokenize");
  c->add_option("-f,--file", o->file, "file whose text to tokenize")->excludes(p);
  c->add_option("--tokenizer", o->tokenizer, "llama2.c tokenizer .bin");
  c->add_flag("--json", o->json, "print {\"tokens\": [...]}");
  c->add_flag("--no-bos", o->no_bos, "do not add BOS/EOS");
  c->add_flag("--parse-special", o->parse_special,
              "turn control tokens written in the text into their ids");
  return [o]() {
    Model m = load_model(o->model, {o->tokenizer});
    auto tok = Tokenizer::create(m.vocab, o->model);
    const std::string text = o->file.empty() ? o->prompt : read_text_file(o->file);
    auto ids = tok->encode(text, !o->no_bos, o->parse_special);
    if (o->json) {
      fmt::print("{{\"tokens\": [{}]}}\n", fmt::join(ids, ","));
    } else {
      for (int32_t id : ids) fmt::print("{:>6} '{}'\n", id, tok->token_to_piece(id));
      fmt::print("{} tokens\n", ids.size());
    }
    return 0;
  };
}

}  // namespace lowbit::cli
