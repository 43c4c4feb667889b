// Models with random weights and realistic shapes, for tests (a GGUF that carries a real
// vocabulary) and for speed measurements where the weights must not fit in cache.
#pragma once

#include "lowbit/model.h"

namespace lowbit {

// Weights ~ N(0, weight_std²) (norm weights 1 + 0.1·N, biases 0.5·weight_std·N), stored as
// `dtype` (F32/F16/BF16).
// The model owns its buffers. `vocab` is padded to config.n_vocab.
Model make_synthetic_model(ModelConfig config, Vocab vocab, uint64_t seed, DType dtype = DType::F32, float weight_std = 0.02f);

}  // namespace lowbit
