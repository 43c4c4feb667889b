// Shared pieces of the quantized Hugging Face directory writers (hf_dir_writer.h).
#include "quant/hf_dir_writer.h"

#include <filesystem>

#include "formats/model_writer.h"
#include "lowbit/error.h"
#include "lowbit/file_io.h"
#include "lowbit/lowrank.h"
#include "lowbit/safetensors.h"
#include "quant/error_sums.h"

namespace lowbit::quant {

namespace fs = std::filesystem;

bool is_layer_matrix(const TensorView& t) {
  return t.shape.size() == 2 && t.name.rfind("blk.", 0) == 0;
}

OutputTensor plain_output(const Model& m, const TensorView& src, TensorReport& rep,
                          std::function<void()> done) {
  rep.type = src.shape.size() == 1 ? DType::F32 : DType::F16;
  rep.bytes = src.n_values() * traits(rep.type).type_size;
  OutputTensor t{{gguf_to_hf_name(src.name), rep.type, src.shape}, rep.bytes, {}};
  t.produce = [&m, &src, dt = rep.type, done, &rep](std::vector<uint8_t>& bytes) {
    const auto x = load_rows(m, src, RopeLayout::Halves);
    bytes = from_f32(x.data(), x.size(), dt);
    if (dt != DType::F32) {
      const auto y = to_f32(TensorView{{src.name, dt, src.shape}, bytes.data(), bytes.size()});
      ErrorSums e;
      e.add(x.data(), y.data(), x.size());
      rep.rel_rms_error = e.relative_rms();
    }
    done();
  };
  return t;
}

void write_hf_dir(const Model& m, const std::string& out_dir, const std::vector<OutputTensor>& out,
                  const std::map<std::string, std::string>& st_meta,
                  const nlohmann::json& quantization_config, const std::string& torch_dtype,
                  const std::map<std::string, std::string>& extra) {
  refuse_lowrank(m, "a Hugging Face checkpoint");
  TemporaryDirectory tmp(out_dir);
  write_safetensors(tmp.file("model.safetensors"), out, st_meta);
  const std::string config_path = (fs::path(m.source) / "config.json").string();
  nlohmann::json cfg = nlohmann::json::parse(read_text_file(config_path, kMaxMetadataBytes));
  cfg["quantization_config"] = quantization_config;
  if (!torch_dtype.empty()) cfg["torch_dtype"] = torch_dtype;
  // A rotation unties the head (lowbit/rotation.h): the checkpoint then carries lm_head.
  cfg["tie_word_embeddings"] = m.config.tied_embeddings;
  write_file_atomic(tmp.file("config.json"), cfg.dump(2) + "\n");
  for (const auto& [name, text] : extra) write_file_atomic(tmp.file(name), text);
  for (const char* f :
       {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
        "special_tokens_map.json", "vocab.json", "merges.txt"}) {
    const fs::path from = fs::path(m.source) / f;
    std::error_code ec;
    if (!fs::exists(from, ec)) continue;
    if (!fs::copy_file(from, tmp.file(f), ec) || ec)
      fail(ErrorKind::Io, "{}: cannot copy into the output: {}", from.string(), ec.message());
  }
  tmp.commit();
}

}  // namespace lowbit::quant
