// Private to the tokenizer sources.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lowbit/tokenizer.h"

namespace lowbit {

std::unique_ptr<Tokenizer> make_spm_tokenizer(Vocab v, const std::string& source);
std::unique_ptr<Tokenizer> make_bpe_tokenizer(Vocab v, const std::string& source);

// Length of the UTF-8 sequence a lead byte starts (1-4), 0 for a byte that cannot lead.
size_t utf8_sequence_length(uint8_t lead);
// Splits UTF-8 text into characters (a byte that cannot lead counts as one character).
std::vector<std::string_view> utf8_chars(std::string_view s);
// GPT-2's reversible byte <-> printable unicode mapping used by byte-level BPE.
const std::string& byte_to_unicode(uint8_t b);
int byte_from_unicode(std::string_view ch);  // -1 when `ch` is not in the mapping

// The merge loop both BPE flavours share: split `text` into UTF-8 characters, then keep
// merging the adjacent pair with the highest priority (ties: leftmost) until no pair has
// one. `priority(left, right)` gets two adjacent views into `text` and returns nullopt when
// they must not merge. Returns the final pieces, left to right.
using PairPriority =
    std::function<std::optional<double>(std::string_view left, std::string_view right)>;
std::vector<std::string_view> merge_pairs(std::string_view text, const PairPriority& priority);

}  // namespace lowbit
