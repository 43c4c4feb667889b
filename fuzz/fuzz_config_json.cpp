// Hugging Face config.json (parse_hf_config, then the RoPE frequencies it implies) and the
// same bytes as a generation_config.json.
#include <string>

#include "fuzz_file.h"
#include "lowbit/error.h"
#include "lowbit/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    auto c = lowbit::parse_hf_config(text, "fuzz");
    lowbit::rope_inv_freq(c);
  } catch (const lowbit::Error& e) {
    fuzz::rejected(e);
  }
  try {
    lowbit::read_generation_config(fuzz::write_input(data, size, "generation_config.json"));
  } catch (const lowbit::Error& e) {
    fuzz::rejected(e);
  }
  return 0;
}
