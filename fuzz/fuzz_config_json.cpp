#include <string>

#include "lowbit/error.h"
#include "lowbit/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto c = lowbit::parse_hf_config(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    lowbit::rope_inv_freq(c);
  } catch (const lowbit::Error&) {
  }
  return 0;
}
