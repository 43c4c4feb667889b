// lowbit inspect FILE: header, metadata and tensor table of a GGUF or safetensors file, a
// llama2.c checkpoint or a Hugging Face model directory.
#include <fmt/core.h>

#include <cstring>
#include <filesystem>

#include "commands.h"
#include "lowbit/error.h"
#include "lowbit/file_io.h"
#include "lowbit/gguf.h"
#include "lowbit/model.h"
#include "lowbit/safetensors.h"

namespace lowbit::cli {
namespace {

void print_tensor_table(const std::vector<TensorView>& tensors) {
  fmt::print("{:<40} {:<16} {:<8} {:>12} {:>7}\n", "tensor", "shape", "type", "bytes", "bpw");
  uint64_t total_bytes = 0, total_values = 0;
  for (const auto& t : tensors) {
    const double bpw = t.n_values() ? 8.0 * t.nbytes / t.n_values() : 0;
    fmt::print("{:<40} {:<16} {:<8} {:>12} {:>7.3f}\n", t.name, shape_string(t.shape),
               dtype_name(t.dtype), t.nbytes, bpw);
    total_bytes += t.nbytes;
    total_values += t.n_values();
  }
  fmt::print("{} tensors, {} values, {} bytes, {:.3f} bits per weight\n", tensors.size(),
             total_values, total_bytes, total_values ? 8.0 * total_bytes / total_values : 0.0);
}

void inspect_gguf(const std::string& path) {
  auto g = GgufFile::open(path);
  fmt::print("GGUF v{}  alignment {}  data at offset {}\n\nmetadata ({} keys):\n", g->version(),
             g->alignment(), g->data_offset(), g->metadata().size());
  for (const auto& [k, v] : g->metadata())
    fmt::print("  {:<45} {:<7} {}\n", k, gguf_type_name(v.type), v.to_string());
  std::vector<TensorView> views;
  for (const auto& t : g->tensors()) views.push_back(t.view);
  fmt::print("\n");
  print_tensor_table(views);
}

void print_config(const char* what, const std::string& path, const ModelConfig& c) {
  fmt::print(
      "{} {}\narch {}  vocab {}  hidden {}  layers {}  heads {}/{} (kv)  ffn {}  ctx {}  "
      "rope_theta {}\n",
      what, path, c.arch, c.n_vocab, c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.n_ff, c.n_ctx,
      c.rope_theta);
}

void print_safetensors(const std::map<std::string, std::string>& metadata,
                       const std::vector<TensorView>& tensors) {
  fmt::print("metadata ({} keys):\n", metadata.size());
  for (const auto& [k, v] : metadata) fmt::print("  {:<45} {}\n", k, v);
  fmt::print("\n");
  print_tensor_table(tensors);
}

}  // namespace

Action add_inspect(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto* c =
      app.add_subcommand("inspect", "Print the header, metadata and tensor table of a model file");
  c->add_option("file", *path,
                "GGUF file, .safetensors file, llama2.c .bin or Hugging Face model directory")
      ->required();
  return [path]() {
    namespace fs = std::filesystem;
    if (fs::is_directory(*path)) {
      Model m = load_model(*path);
      print_config("Hugging Face model directory", *path, m.config);
      fmt::print(
          "tokenizer: {} tokens ({})\n", m.vocab.size(),
          m.vocab.kind == VocabKind::Spm ? "SentencePiece BPE" : "byte-level BPE " + m.vocab.pre);
      auto ck = SafetensorsCheckpoint::open_dir(*path);
      print_safetensors(ck->metadata(), ck->tensors());
      return 0;
    }
    auto f = MappedFile::open(*path);
    if (f->size() >= 4 && std::memcmp(f->data(), "GGUF", 4) == 0) {
      inspect_gguf(*path);
    } else if (path->size() >= 12 && path->substr(path->size() - 12) == ".safetensors") {
      auto st = SafetensorsFile::open(*path);
      fmt::print("safetensors {}\n", *path);
      print_safetensors(st->metadata(), st->tensors());
    } else {  // what load_model takes for a llama2.c checkpoint
      const Model m = load_model(*path);
      print_config("llama2.c checkpoint", *path, m.config);
      fmt::print("\n");
      print_tensor_table(m.tensors);
    }
    return 0;
  };
}

}  // namespace lowbit::cli
