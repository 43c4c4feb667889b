// The per-entry value tables of codebook_decode.h, built from the grids (quant/iq_grids.h)
// and the types' level magnitudes (quant/iq_shapes.h) at the first use of each type.
#include "kernels/codebook_decode.h"

#include <vector>

#include "quant/iq_shapes.h"

namespace lowbit::kernels {
namespace {

std::vector<uint64_t> entry_values(DType t) {
  using namespace quant;
  const IqShape* shape = iq_shape(t);
  const IqGrid& g = iq_grid(shape ? shape->grid : IqGridId::Iq1s);
  std::vector<uint64_t> values(g.n);
  for (int i = 0; i < g.n; ++i)
    for (int j = 0; j < g.width; ++j) {
      const int l = g.entry(i)[j];
      const int v = shape ? shape->magnitude[l] : 8 * (l - 1);
      values[i] |= uint64_t{static_cast<uint8_t>(v)} << (8 * j);
    }
  return values;
}

}  // namespace

const uint64_t* codebook_entry_values(DType t) {
  switch (t) {
#define LOWBIT_ENTRY_VALUES(T)                                     \
  case DType::T: {                                                 \
    static const std::vector<uint64_t> v = entry_values(DType::T); \
    return v.data();                                               \
  }
    LOWBIT_CODEBOOK_TYPES(LOWBIT_ENTRY_VALUES)
#undef LOWBIT_ENTRY_VALUES
    default:
      return nullptr;
  }
}

}  // namespace lowbit::kernels
