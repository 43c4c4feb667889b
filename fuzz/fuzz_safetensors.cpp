#include "fuzz_file.h"
#include "lowbit/error.h"
#include "lowbit/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = lowbit::SafetensorsFile::open(fuzz_write_input(data, size, ".safetensors"));
    uint64_t sum = 0;
    for (const auto& t : f->tensors())  // touch every byte the parser vouched for
      for (uint64_t i = 0; i < t.nbytes; ++i) sum += t.data[i];
    (void)sum;
  } catch (const lowbit::Error&) {
  }
  return 0;
}
