// Inputs the fuzz targets once crashed on (fuzz/regressions/<target>_*): each must now be
// rejected with a lowbit::Error naming the problem. The fuzz build also replays them through
// the fuzz targets themselves (ctest fuzz_regressions_<target>).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "eval/logits_file.h"
#include "lowbit/calibration.h"
#include "lowbit/error.h"
#include "lowbit/mixed.h"
#include "lowbit/model.h"
#include "lowbit/tensor.h"
#include "lowbit/tokenizer.h"
#include "test_support.h"

namespace lowbit {
namespace {

std::string regression(const std::string& name) {
  return std::string(LOWBIT_SOURCE_DIR) + "/fuzz/regressions/" + name;
}

size_t open_descriptors() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// fuzz_imatrix: a '.counts' of 4.6e27 overflowed the conversion to uint64_t (UBSan).
TEST(FuzzRegression, ImatrixCountTooLargeIsAFormatError) {
  const std::string msg = test::expect_error(
      [] { read_calibration_stats(regression("imatrix_counts_overflow.gguf")); });
  EXPECT_NE(msg.find("blk.0.attn_q.weight.counts' is 4.59"), std::string::npos) << msg;
}

// fuzz_logits: a 138-byte file claiming 2^32 tokens made the reader allocate and zero 16 GB.
TEST(FuzzRegression, LogitsTokenCountPastTheFileIsAFormatError) {
  const std::string msg =
      test::expect_error([] { LogitsReader r(regression("logits_token_count_oom.logits")); });
  EXPECT_NE(msg.find("4294967296 tokens run past the end of the file (138 bytes)"),
            std::string::npos)
      << msg;
}

// fuzz_logits: a rejected file kept its descriptor open (the constructor threw before the
// destructor could close it), until fopen failed with EMFILE.
TEST(FuzzRegression, RejectedLogitsFilesAreClosed) {
  const size_t before = open_descriptors();
  for (int i = 0; i < 8; ++i)
    test::expect_error([] { LogitsReader r(regression("logits_token_count_oom.logits")); });
  EXPECT_EQ(open_descriptors(), before);
}

// A record that the file cannot hold is refused before anything is allocated for it.
TEST(FuzzRegression, LogitsRecordPastTheFileIsAFormatError) {
  test::TempDir dir;
  const uint32_t u[6] = {4, 1u << 24, 1, 0, 0, 1};  // n_ctx, n_vocab 2^24, full records
  const uint64_t n = 0;
  std::string bytes = "LBLOGIT1";
  bytes.append(reinterpret_cast<const char*>(u), sizeof u);
  bytes.append(reinterpret_cast<const char*>(&n), sizeof n);
  bytes.append(8, '\0');  // a few bytes of a 32 MB record
  test::write_file(dir.file("base.logits"), bytes);
  LogitsReader r(dir.file("base.logits"));
  BaseRecord rec;
  const std::string msg = test::expect_error([&] { r.next(rec); });
  EXPECT_NE(msg.find("ends before the last scored position"), std::string::npos) << msg;
  EXPECT_TRUE(rec.logp.empty());
}

// fuzz_imatrix: a GGUF tensor with no values reached to_f32, whose memcpy then got a null
// destination (UBSan: null passed as a nonnull argument, even for 0 bytes).
TEST(FuzzRegression, EmptyTensorsConvertToNothing) {
  TensorView t;
  t.dtype = DType::F32;
  t.shape = {0, 4};
  EXPECT_TRUE(to_f32(t).empty());
  const std::string msg =
      test::expect_error([] { read_calibration_stats(regression("imatrix_empty_tensor.gguf")); });
  EXPECT_NE(msg.find("blk.0.ffn_down.weight.counts' is 1e-45"), std::string::npos) << msg;
}

// fuzz_gguf: a BPE merge without a space was rejected after the pre-tokenizer regex had been
// compiled, and the throwing constructor leaked it (LeakSanitizer).
TEST(FuzzRegression, BpeMergeWithoutASpaceIsAFormatErrorWithoutLeaks) {
  Model m = load_model(regression("gguf_bpe_merge_leak.gguf"));
  const std::string msg = test::expect_error([&] { Tokenizer::create(m.vocab, "gguf"); });
  EXPECT_NE(msg.find("merge #0 'H#e' is not two tokens separated by a space"), std::string::npos)
      << msg;
}

// fuzz_recipe: {"format": <number>} made j.value("format", "") throw a json type_error that
// was no lowbit::Error.
TEST(FuzzRegression, RecipeFormatThatIsNoStringIsAFormatError) {
  const std::string msg =
      test::expect_error([] { read_recipe(regression("recipe_format_not_string.json")); });
  EXPECT_NE(msg.find("not a lowbit recipe"), std::string::npos) << msg;
}

// fuzz_spm_model: a byte-type piece "<0x\x15" "A>" made token_to_piece call std::stoi on
// non-hex text, whose std::invalid_argument escaped. Such a piece now reads as its text.
TEST(FuzzRegression, SpmByteTokenThatIsNoHexIsText) {
  const std::string bytes = test::read_file(regression("spm_model_bad_byte_token.model"));
  Vocab v = parse_spm_model(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "spm");
  ASSERT_EQ(v.types.at(1), TokenType::Byte);
  auto tok = Tokenizer::create(std::move(v), "spm");
  EXPECT_EQ(tok->token_to_piece(1),
            "<0x\x15"
            "A>");
  EXPECT_EQ(tok->decode({1, 1}, false),
            "<0x\x15"
            "A><0x\x15"
            "A>");
}

// fuzz_tokenizer_json: one vocabulary id of 16,770,686 in a 261-byte file made the parser
// build 16.7 million placeholder tokens (out of memory under ASan's 2 GB limit).
TEST(FuzzRegression, TokenizerJsonSparseIdIsAFormatError) {
  const std::string path = regression("tokenizer_json_sparse_id_oom.json");
  const std::string msg =
      test::expect_error([&] { parse_hf_tokenizer_json(test::read_file(path), path); });
  EXPECT_NE(msg.find("token 'l' has id 16770686, which leaves more than 65536 ids unused"),
            std::string::npos)
      << msg;
}

}  // namespace
}  // namespace lowbit
