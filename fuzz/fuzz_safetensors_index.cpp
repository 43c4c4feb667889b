// A sharded safetensors checkpoint (lowbit::SafetensorsCheckpoint::open_dir): the input is
// model.safetensors.index.json; two small valid shards sit beside it, so that the index can
// name them (or name files that do not exist, or tensors they do not hold).
#include <cstring>

#include "fuzz_file.h"
#include "lowbit/error.h"
#include "lowbit/safetensors.h"

namespace {

// A valid shard holding the F32 vectors `a` and `b` of two values each.
std::string shard(const char* a, const char* b) {
  std::string header = std::string("{\"") + a +
                       "\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"" + b +
                       "\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}";
  while (header.size() % 8) header += ' ';
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);  // little-endian hosts only, as the library
  out += header;
  const float values[4] = {1.0f, -2.0f, 0.5f, 3.0f};
  out.append(reinterpret_cast<const char*>(values), sizeof values);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string shard1 = shard("model.embed_tokens.weight", "model.norm.weight");
  static const std::string shard2 = shard("lm_head.weight", "model.layers.0.mlp.up_proj.weight");
  try {
    fuzz::write_input(data, size, "model.safetensors.index.json");
    fuzz::ScratchDir& dir = fuzz::ScratchDir::get();
    dir.write("model-00001-of-00002.safetensors", shard1);
    dir.write("model-00002-of-00002.safetensors", shard2);
    auto ck = lowbit::SafetensorsCheckpoint::open_dir(dir.path());
    uint64_t sum = 0;
    for (const auto& t : ck->tensors()) sum += fuzz::touch(t.data, t.nbytes);
    for (const auto& kv : ck->metadata()) sum += kv.second.size();
    (void)sum;
  } catch (const lowbit::Error& e) {
    fuzz::rejected(e);
  }
  return 0;
}
