// Base-model logits file of `lowbit perplexity --save-logits` (LogitsReader): the header, the
// token list, then the scored records, read until the file ends (at most 256 of them).
#include "eval/logits_file.h"
#include "fuzz_file.h"
#include "lowbit/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    lowbit::LogitsReader r(fuzz::write_input(data, size, "base.logits"));
    lowbit::BaseRecord rec;
    for (int i = 0; i < 256; ++i) r.next(rec);
  } catch (const lowbit::Error& e) {
    fuzz::rejected(e);
  }
  return 0;
}
