// lowbit convert MODEL -o OUT.gguf|OUT.safetensors [--type f32|f16|bf16] [--tokenizer T]
#include <fmt/core.h>

#include "commands.h"
#include "lowbit/error.h"
#include "lowbit/file_io.h"
#include "lowbit/model.h"

namespace lowbit::cli {

Action add_convert(CLI::App& app) {
  struct Opts { std::string model, out, type = "f16", tokenizer; };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand("convert", "Convert a model (HF directory, GGUF, llama2.c) to GGUF or safetensors");
  c->add_option("model", o->model, "model directory, .gguf file or llama2.c .bin")->required();
  c->add_option("-o,--output", o->out, "output file: *.gguf or *.safetensors")->required();
  c->add_option("--type", o->type, "element type of the matrices: f32, f16, bf16")->capture_default_str();
  c->add_option("--tokenizer", o->tokenizer, "llama2.c tokenizer .bin");
  return [o]() {
    auto dt = dtype_from_name(o->type);
    if (!dt || (*dt != DType::F32 && *dt != DType::F16 && *dt != DType::BF16))
      fail(ErrorKind::Argument, "--type '{}': expected f32, f16 or bf16", o->type);
    check_output_path(o->out, {o->model, o->tokenizer});
    Model m = load_model(o->model, {o->tokenizer});
    auto ends_with = [&](const char* s) {
      std::string suf(s);
      return o->out.size() >= suf.size() && o->out.compare(o->out.size() - suf.size(), suf.size(), suf) == 0;
    };
    if (ends_with(".gguf")) write_model_gguf(m, o->out, *dt);
    else if (ends_with(".safetensors")) write_model_safetensors(m, o->out, *dt);
    else fail(ErrorKind::Argument, "-o '{}': the output name must end in .gguf or .safetensors", o->out);
    fmt::print(stderr, "wrote {} ({} tensors, {})\n", o->out, m.tensors.size(), o->type);
    return 0;
  };
}

}  // namespace lowbit::cli
