#include "fuzz_file.h"
#include "lowbit/error.h"
#include "lowbit/gguf.h"
#include "lowbit/model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const std::string path = fuzz_write_input(data, size, ".gguf");
    auto g = lowbit::GgufFile::open(path);
    uint64_t sum = 0;
    for (const auto& t : g->tensors())
      for (uint64_t i = 0; i < t.view.nbytes; ++i) sum += t.view.data[i];
    for (const auto& kv : g->metadata()) sum += kv.second.to_string().size();
    (void)sum;
    lowbit::load_model(path);  // the model-level checks on top of the container
  } catch (const lowbit::Error&) {
  }
  return 0;
}
