// Writes a GGUF model with random weights and realistic shapes, for measurements where
// the weights must not fit in cache or memory must be watched:
//   lowbit_make_synthetic OUT.gguf [llama-1b|llama-8m] [f32|f16|bf16] [LAYERS]
// LAYERS keeps the shape's widths with fewer (or more) blocks: per-block costs measured on
// a few blocks of the 1B shapes.
// llama-1b: hidden 2048, 16 layers, FFN 8192, 32 heads / 8 KV heads, vocab 128256, tied
// embeddings (1.24 B weights, the shape of Llama-3.2-1B).
#include <cstdlib>
#include <fmt/core.h>

#include <string>

#include "lowbit/error.h"
#include "lowbit/model.h"
#include "lowbit/synthetic.h"

int main(int argc, char** argv) {
  using namespace lowbit;
  try {
    if (argc < 2)
      fail(ErrorKind::Argument,
           "usage: lowbit_make_synthetic OUT.gguf [llama-1b|llama-8m] [f32|f16|bf16] [LAYERS]");
    const std::string shape = argc > 2 ? argv[2] : "llama-1b";
    const auto dtype = dtype_from_name(argc > 3 ? argv[3] : "bf16");
    if (!dtype) fail(ErrorKind::Argument, "unknown type '{}'", argv[3]);
    ModelConfig c = synthetic_shape(shape);
    if (argc > 4) {
      const int layers = std::atoi(argv[4]);
      if (layers < 1)
        fail(ErrorKind::Argument, "LAYERS must be a positive count, not '{}'", argv[4]);
      c.n_layer = static_cast<uint32_t>(layers);
    }
    const Model m = make_synthetic_model(c, Vocab{}, 1, *dtype);
    write_model_gguf(m, argv[1], *dtype);
    fmt::print("wrote {} ({} tensors)\n", argv[1], m.tensors.size());
    return 0;
  } catch (const Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
}
