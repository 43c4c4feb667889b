// Mixed-precision recipe JSON (read_recipe: `lowbit quantize --recipe`).
#include "fuzz_file.h"
#include "lowbit/error.h"
#include "lowbit/mixed.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    lowbit::read_recipe(fuzz::write_input(data, size, "recipe.json"));
  } catch (const lowbit::Error& e) {
    fuzz::rejected(e);
  }
  return 0;
}
