// llama2.c checkpoint (load_model on a .bin): the 7-int32 header and the weight arrays it
// implies. A valid tokenizer.bin with as many tokens as the header's vocab_size (when that is
// small) sits beside it, so the load can get past the tokenizer; fuzz_llama2c_tokenizer
// fuzzes that file.
#include <cstring>

#include "fuzz_file.h"
#include "lowbit/error.h"
#include "lowbit/model.h"

namespace {

// llama2.c tokenizer: int32 max_token_length, then per token f32 score, int32 length, bytes.
std::string make_tokenizer(uint32_t n_vocab) {
  std::string out;
  auto put = [&out](const void* p, size_t n) { out.append(static_cast<const char*>(p), n); };
  const int32_t max_len = 8;
  put(&max_len, 4);
  for (uint32_t i = 0; i < n_vocab; ++i) {
    char piece[16];
    const int len = i >= 3 && i < 259 ? std::snprintf(piece, sizeof piece, "<0x%02X>", i - 3)
                                      : std::snprintf(piece, sizeof piece, "t%u", i);
    const float score = -static_cast<float>(i);
    put(&score, 4);
    put(&len, 4);
    put(piece, len);
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static uint32_t cached_vocab = 0;
  static std::string tokenizer;
  try {
    const std::string path = fuzz::write_input(data, size, "model.bin");
    int32_t vocab = 0;
    if (size >= 28) std::memcpy(&vocab, data + 20, 4);
    const uint32_t n = vocab == INT32_MIN ? 0u : static_cast<uint32_t>(vocab < 0 ? -vocab : vocab);
    if (n <= 4096) {
      if (n != cached_vocab || tokenizer.empty()) tokenizer = make_tokenizer(n), cached_vocab = n;
      fuzz::ScratchDir::get().write("tokenizer.bin", tokenizer);
    }
    lowbit::Model m = lowbit::load_model(path);
    uint64_t sum = 0;
    for (const auto& t : m.tensors) sum += fuzz::touch(t.data, t.nbytes);
    (void)sum;
  } catch (const lowbit::Error& e) {
    fuzz::rejected(e);
  }
  return 0;
}
