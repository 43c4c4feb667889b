#include "test_support.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "lowbit/error.h"
#include "lowbit/quant.h"
#include "lowbit/safetensors.h"
#include "lowbit/synthetic.h"

namespace lowbit::test {

namespace fs = std::filesystem;

std::string shared_path(const std::string& rel) {
  const char* env = std::getenv("LOWBIT_SHARED");
  fs::path root = env && *env ? fs::path(env) : fs::path(LOWBIT_SHARED_DEFAULT);
  fs::path p = root / rel;
  if (!fs::exists(p)) {
    ADD_FAILURE() << "missing shared asset " << p
                  << " (set LOWBIT_SHARED to the shared/ directory)";
    throw std::runtime_error("missing shared asset " + p.string());
  }
  return fs::absolute(p).lexically_normal().string();
}

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "lowbit-test-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

static std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

CliResult run_process(const std::vector<std::string>& argv) {
  TempDir tmp;
  std::string cmd;
  for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + quote(a);
  cmd += " >" + tmp.file("out") + " 2>" + tmp.file("err");
  int status = std::system(cmd.c_str());
  CliResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_file(tmp.file("out"));
  r.err = read_file(tmp.file("err"));
  return r;
}

CliResult run_cli(const std::vector<std::string>& args) {
  std::vector<std::string> argv{LOWBIT_CLI_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv);
}

std::string expect_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected lowbit::Error";
  return "";
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<float> gaussian(size_t n, uint32_t seed, float stddev) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

double max_relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, norm = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    diff = std::max<double>(diff, std::fabs(a[i] - b[i]));
    norm = std::max<double>(norm, std::fabs(a[i]));
  }
  return norm > 0 ? diff / norm : diff;
}

std::vector<DType> block_types(bool with_2of4) {
  std::vector<DType> out;
  for (int i = 0; i < static_cast<int>(DType::Count); ++i) {
    const DType t = static_cast<DType>(i);
    if (can_quantize_to(t) && traits(t).block_size > 1 && (with_2of4 || !is_sparse_2of4(t)))
      out.push_back(t);
  }
  return out;
}

HfDirWriter::HfDirWriter(const std::string& src, const std::string& out,
                         const std::string& quantization_config)
    : out_(out) {
  std::filesystem::create_directories(out);
  std::filesystem::copy_file(src + "/tokenizer.model", out + "/tokenizer.model");
  nlohmann::json cfg = nlohmann::json::parse(read_file(src + "/config.json"));
  cfg["quantization_config"] = nlohmann::json::parse(quantization_config);
  write_file(out + "/config.json", cfg.dump());
}

void HfDirWriter::add(const std::string& name, DType dt, std::vector<uint64_t> shape,
                      std::vector<uint8_t> bytes) {
  auto b = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
  bytes_.push_back(b);
  tensors_.push_back(
      {{name, dt, std::move(shape)}, b->size(), [b](std::vector<uint8_t>& o) { o = *b; }});
}

void HfDirWriter::write() const {
  write_safetensors(out_ + "/model.safetensors", tensors_, {{"format", "pt"}});
}

Model small_synthetic_model(const char* arch, bool tied, uint64_t seed) {
  ModelConfig c;
  c.arch = arch;
  c.n_vocab = 64, c.n_embd = 32, c.n_layer = 2, c.n_head = 4, c.n_head_kv = 2, c.head_dim = 8,
  c.n_ff = 64;
  c.n_ctx = 32;
  c.tied_embeddings = tied;
  c.attn_bias = c.arch == std::string("qwen2");
  c.qk_norm = c.arch == std::string("qwen3");
  return make_synthetic_model(c, Vocab{}, seed, DType::F32, 0.3f);
}

}  // namespace lowbit::test
