// One safetensors file (lowbit::SafetensorsFile): header length, JSON header, dtypes, shapes,
// data offsets.
#include "fuzz_file.h"
#include "lowbit/error.h"
#include "lowbit/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = lowbit::SafetensorsFile::open(fuzz::write_input(data, size, "model.safetensors"));
    uint64_t sum = 0;
    for (const auto& t : f->tensors()) sum += fuzz::touch(t.data, t.nbytes);
    (void)sum;
  } catch (const lowbit::Error& e) {
    fuzz::rejected(e);
  }
  return 0;
}
