// Private to the tokenizer sources.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lowbit/tokenizer.h"

namespace lowbit {

std::unique_ptr<Tokenizer> make_spm_tokenizer(Vocab v, const std::string& source);
std::unique_ptr<Tokenizer> make_bpe_tokenizer(Vocab v, const std::string& source);

// Splits UTF-8 text into characters (a malformed lead byte counts as one byte).
std::vector<std::string_view> utf8_chars(std::string_view s);
// GPT-2's reversible byte <-> printable unicode mapping used by byte-level BPE.
const std::string& byte_to_unicode(uint8_t b);
int byte_from_unicode(std::string_view ch);  // -1 when `ch` is not in the mapping

}  // namespace lowbit
