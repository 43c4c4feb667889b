// GGUF container (lowbit::GgufFile) and the model on top of it (load_model: hyperparameters,
// tokenizer.ggml.* vocabulary, tensor shapes), then the tokenizer built from that vocabulary.
#include "fuzz_file.h"
#include "lowbit/error.h"
#include "lowbit/gguf.h"
#include "lowbit/model.h"
#include "lowbit/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const std::string path = fuzz::write_input(data, size, "model.gguf");
    auto g = lowbit::GgufFile::open(path);
    uint64_t sum = 0;
    for (const auto& t : g->tensors()) sum += fuzz::touch(t.view.data, t.view.nbytes);
    for (const auto& kv : g->metadata()) sum += kv.second.to_string().size();
    (void)sum;
    lowbit::Model m = lowbit::load_model(path);  // the model-level checks on top of the container
    auto tok = lowbit::Tokenizer::create(std::move(m.vocab), path);
    tok->decode(tok->encode("Hello world! \xe4\xb8\xad 12", true, true));
  } catch (const lowbit::Error& e) {
    fuzz::rejected(e);
  }
  return 0;
}
