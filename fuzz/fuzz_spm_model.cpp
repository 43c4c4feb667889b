// SentencePiece tokenizer.model (parse_spm_model: the protobuf ModelProto read by hand), then
// the tokenizer built from it encoding and decoding a fixed text.
#include "fuzz_file.h"
#include "lowbit/error.h"
#include "lowbit/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    lowbit::Vocab v = lowbit::parse_spm_model(data, size, "tokenizer.model");
    auto tok = lowbit::Tokenizer::create(std::move(v), "tokenizer.model");
    tok->decode(tok->encode(" Hello  world, \xe4\xb8\xad\xe6\x96\x87 <s>x</s>\n", true, true),
                false);
  } catch (const lowbit::Error& e) {
    fuzz::rejected(e);
  }
  return 0;
}
