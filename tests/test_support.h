// Helpers shared by the tests: shared asset paths, temporary directories, running the CLI.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lowbit/dtype.h"
#include "lowbit/model.h"
#include "lowbit/tensor.h"

namespace lowbit::test {

// Absolute path of `rel` inside ../shared (or $LOWBIT_SHARED). A missing asset fails the
// test loudly instead of skipping it.
std::string shared_path(const std::string& rel);

// A fresh directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct CliResult {
  int exit_code;
  std::string out, err;
};
// Runs argv[0] with the rest as arguments (each shell-quoted) and captures its output.
CliResult run_process(const std::vector<std::string>& argv);
// Runs the lowbit binary with `args`.
CliResult run_cli(const std::vector<std::string>& args);

// Runs f, which must throw lowbit::Error; returns its message (fails the test otherwise).
std::string expect_error(const std::function<void()>& f);

void write_file(const std::string& path, const std::string& bytes);
// n samples of N(0, stddev²) from a fixed seed.
std::vector<float> gaussian(size_t n, uint32_t seed, float stddev = 1.0f);
std::string read_file(const std::string& path);
// The GGUF block types lowbit quantizes to (Q4_0 ... IQ4_XS), in DType order, and with
// with_2of4 lowbit's 2:4 sparse types after them.
std::vector<DType> block_types(bool with_2of4 = false);
// A Hugging Face directory made by a test the way another tool lays out its checkpoints:
// `src`'s tokenizer.model, `src`'s config.json with `quantization_config` (JSON text)
// added, and the tensors given to add(), written as model.safetensors by write().
class HfDirWriter {
 public:
  HfDirWriter(const std::string& src, const std::string& out,
              const std::string& quantization_config);
  void add(const std::string& name, DType dt, std::vector<uint64_t> shape,
           std::vector<uint8_t> bytes);
  void write() const;

 private:
  std::string out_;
  std::vector<std::shared_ptr<std::vector<uint8_t>>> bytes_;
  std::vector<OutputTensor> tensors_;
};

// A small random F32 model for the training passes' tests: vocab 64, n_embd 32, 2 layers,
// 4 query heads and 2 KV heads of 8, n_ff 64; qwen2 has biases, qwen3 q/k norms.
Model small_synthetic_model(const char* arch, bool tied, uint64_t seed = 5);

// max |a - b| over max |a|: how far two sets of logits are apart (fails the test when their
// sizes differ).
double max_relative_difference(const std::vector<float>& a, const std::vector<float>& b);

}  // namespace lowbit::test
