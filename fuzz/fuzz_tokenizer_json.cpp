// Hugging Face tokenizer.json (byte-level BPE vocabulary, merges, added tokens, pre-tokenizer),
// then the tokenizer built from it encoding and decoding a fixed text.
#include <string>

#include "fuzz_file.h"
#include "lowbit/error.h"
#include "lowbit/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    std::string text(reinterpret_cast<const char*>(data), size);
    lowbit::Vocab v = lowbit::parse_hf_tokenizer_json(text, "fuzz");
    auto tok = lowbit::Tokenizer::create(std::move(v), "fuzz");
    auto ids = tok->encode("Hello world, it's 2024! \xe4\xb8\xad\xe6\x96\x87 <|endoftext|>\n\n  x",
                           true, true);
    tok->decode(ids);
  } catch (const lowbit::Error& e) {
    fuzz::rejected(e);
  }
  return 0;
}
