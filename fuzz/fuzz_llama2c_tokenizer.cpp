// llama2.c tokenizer.bin (read_llama2c_tokenizer). The caller passes the vocabulary size
// (the checkpoint's), so the input is: u16 little-endian n_vocab, then the file's bytes. The
// tokenizer built from it then encodes and decodes a fixed text.
#include "fuzz_file.h"
#include "lowbit/error.h"
#include "lowbit/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint32_t n_vocab = data[0] | (data[1] << 8);
  try {
    const std::string path = fuzz::write_input(data + 2, size - 2, "tokenizer.bin");
    lowbit::Vocab v = lowbit::read_llama2c_tokenizer(path, n_vocab);
    auto tok = lowbit::Tokenizer::create(std::move(v), path);
    tok->decode(tok->encode("Once upon a time, \xe4\xb8\xad 42\n", true, true));
  } catch (const lowbit::Error& e) {
    fuzz::rejected(e);
  }
  return 0;
}
