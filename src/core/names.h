// Tensor names: whether one ends in a part's suffix (".qweight", ".counts", ...).
#pragma once

#include <string_view>

namespace lowbit {

// `name` is longer than `suffix` and ends with it: "w.scales" has ".scales", ".scales" not.
inline bool has_suffix(std::string_view name, std::string_view suffix) {
  return name.size() > suffix.size() && name.ends_with(suffix);
}

}  // namespace lowbit
