// A small command-line bridge to the llama.cpp libraries that node-llama-cpp ships, loaded
// with dlopen so lowbit never links against them. Tests use it as an independent judge:
//   llamacpp_native LIBDIR dequantize GGML_TYPE N IN.bin OUT.f32   decode N values with ggml
//   llamacpp_native LIBDIR quantize-rows GGML_TYPE ROWS ROW_LEN IN.f32 OUT.bin [IMATRIX.f32]
//   llamacpp_native LIBDIR quantize-model IN.gguf OUT.gguf FTYPE THREADS [IMATRIX.txt]
// IMATRIX.txt: lines "TENSOR_NAME ROW_LEN [V1 .. V_ROW_LEN]": each listed tensor gets the
// importance values given, or all ones without them (llama.cpp refuses its 2-bit presets
// without an importance vector).
// Exit status 0 on success, 2 on a usage or loading problem.
#include <dlfcn.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "llamacpp_native: %s\n", msg.c_str());
  std::exit(2);
}

void* open_lib(const std::string& dir, const char* name) {
  void* h = dlopen((dir + "/" + name).c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (!h) die(dlerror());
  return h;
}

template <typename F>
F sym(void* lib, const char* name) {
  void* p = dlsym(lib, name);
  if (!p) die(std::string("missing symbol ") + name);
  return reinterpret_cast<F>(p);
}

std::vector<char> read_all(const char* path) {
  FILE* f = std::fopen(path, "rb");
  if (!f) die(std::string("cannot open ") + path);
  std::vector<char> buf;
  char tmp[65536];
  size_t n;
  while ((n = std::fread(tmp, 1, sizeof tmp, f)) > 0) buf.insert(buf.end(), tmp, tmp + n);
  std::fclose(f);
  return buf;
}

void write_all(const char* path, const void* data, size_t n) {
  FILE* f = std::fopen(path, "wb");
  if (!f || std::fwrite(data, 1, n, f) != n) die(std::string("cannot write ") + path);
  std::fclose(f);
}

// The public ggml type-traits struct starts with these fields (ggml.h).
struct TypeTraitsHead {
  const char* type_name;
  int64_t blck_size;
  int64_t blck_size_interleave;
  size_t type_size;
  bool is_quantized;
  void (*to_float)(const void* x, float* y, int64_t k);
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) die("usage: llamacpp_native LIBDIR COMMAND ...");
  const std::string dir = argv[1], cmd = argv[2];
  if (cmd == "dequantize" && argc == 7) {
    void* base = open_lib(dir, "libggml-base.so");
    auto traits = sym<const TypeTraitsHead* (*)(int)>(base, "ggml_get_type_traits");
    const int type = std::atoi(argv[3]);
    const int64_t n = std::atoll(argv[4]);
    const TypeTraitsHead* t = traits(type);
    if (!t->to_float) die("type has no to_float");
    auto in = read_all(argv[5]);
    std::vector<float> out(n);
    t->to_float(in.data(), out.data(), n);
    write_all(argv[6], out.data(), out.size() * 4);
    return 0;
  }
  if (cmd == "quantize-rows" && (argc == 8 || argc == 9)) {
    void* base = open_lib(dir, "libggml-base.so");
    auto init = sym<void (*)(int)>(base, "ggml_quantize_init");
    auto chunk = sym<size_t (*)(int, const float*, void*, int64_t, int64_t, int64_t, const float*)>(
        base, "ggml_quantize_chunk");
    auto row_size = sym<size_t (*)(int, int64_t)>(base, "ggml_row_size");
    const int type = std::atoi(argv[3]);
    const int64_t rows = std::atoll(argv[4]), row_len = std::atoll(argv[5]);
    auto in = read_all(argv[6]);
    if (static_cast<int64_t>(in.size()) != rows * row_len * 4)
      die("input size does not match ROWS x ROW_LEN");
    std::vector<char> imatrix;
    if (argc == 9) imatrix = read_all(argv[8]);
    init(type);
    std::vector<char> out(row_size(type, row_len) * rows);
    chunk(type, reinterpret_cast<const float*>(in.data()), out.data(), 0, rows, row_len,
          imatrix.empty() ? nullptr : reinterpret_cast<const float*>(imatrix.data()));
    write_all(argv[7], out.data(), out.size());
    return 0;
  }
  if (cmd == "quantize-model" && (argc == 7 || argc == 8)) {
    open_lib(dir, "libggml-base.so");
    open_lib(dir, "libggml.v0.5.0.so");
    void* llama = open_lib(dir, "libllama.v0.5.0.so");
    sym<void (*)()>(llama, "llama_backend_init")();
    // The params struct is returned by value (hidden pointer); a generous buffer holds it.
    // Its first two fields are stable: int32 nthread, enum llama_ftype ftype.
    // The importance data is a pointer at byte 24 (after nthread, ftype, the two tensor type
    // overrides and six bools) to an array of {name, data, size} records ended by a null name
    // (llama.h's llama_model_imatrix_data).
    struct Params {
      int32_t nthread;
      int32_t ftype;
      int32_t types[2];
      bool flags[8];
      void* imatrix;
      char rest[1024];
    };
    auto defaults = sym<Params (*)()>(llama, "llama_model_quantize_default_params");
    auto quantize =
        sym<uint32_t (*)(const char*, const char*, const Params*)>(llama, "llama_model_quantize");
    Params p = defaults();
    p.ftype = std::atoi(argv[5]);
    p.nthread = std::atoi(argv[6]);
    struct ImportanceRecord {
      const char* name;
      const float* data;
      size_t size;
    };
    std::vector<std::string> names;
    std::vector<std::vector<float>> values;
    std::vector<ImportanceRecord> records;
    if (argc == 8) {
      std::ifstream list(argv[7]);
      if (!list) die(std::string("cannot open ") + argv[7]);
      for (std::string line; std::getline(list, line);) {
        std::istringstream fields(line);
        std::string name;
        size_t n = 0;
        if (!(fields >> name >> n)) continue;
        std::vector<float> v;
        for (float x; fields >> x;) v.push_back(x);
        if (v.empty()) v.assign(n, 1.0f);
        if (v.size() != n)
          die(name + ": " + std::to_string(v.size()) + " values, not " + std::to_string(n));
        names.push_back(name), values.push_back(std::move(v));
      }
      for (size_t i = 0; i < names.size(); ++i)
        records.push_back({names[i].c_str(), values[i].data(), values[i].size()});
      records.push_back({nullptr, nullptr, 0});
      p.imatrix = records.data();
    }
    return quantize(argv[3], argv[4], &p) == 0 ? 0 : 2;
  }
  die("unknown command or wrong argument count: " + cmd);
}
