// A QuantizeJob from flat settings, the way the front ends take them: the CLI fills
// JobSettings from its typed flags; the C API and the Python package set them by name
// (the long flags of `lowbit quantize` without dashes: "type", "method", "calib",
// "calib-samples", "damp", "awq-grid", "group", "max-size", ...). One mapping for all
// three, so the same settings give the same file.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lowbit/job.h"

namespace lowbit {

struct JobSettings {
  QuantizeJob job;  // model, output, tokenizer, calibration, threads, method parameters
  GgufTarget gguf;  // recipe, sensitivity, pure (when the type is a GGUF preset or type)
  std::string type = "Q4_K_M";            // GGUF preset or type, int2..int8 (affine), "w8a8"
  std::string method;                     // a registered method, "w8a8" (int8 + rtn), "" = default
  std::vector<std::string> tensor_types;  // REGEX=TYPE
  std::string output_tensor_type, token_embedding_type;
  std::optional<bool> act_order;  // gptq
  int64_t group = 128;            // affine: values per group (0: per channel, -1: per tensor)
  bool group_given = false;
  bool asym = false;
  RangeMethod range = RangeMethod::MinMax;
  double percentile = 99.9;
  bool static_activations = false;  // w8a8 / smoothquant
  std::optional<AffineFormat> format;  // affine: lowbit (default), gptq, awq
  std::optional<double> bpw;        // budget in bits per weight (above 0)
  std::string max_size;             // budget in bytes ("4.2MB", "3GiB"), "" = none
};

// The job the settings describe. Throws Argument naming the setting for a value that does
// not parse or settings that contradict each other; validate() checks the rest.
QuantizeJob make_job(const JobSettings& s);

// Sets one setting by name from its text ("true"/"false" for switches). Throws Argument
// naming the setting for an unknown name or a bad value.
void set_job_option(JobSettings& s, const std::string& name, const std::string& value);
std::vector<std::string> job_option_names();

// "Q2_K,IQ2_S,Q4_K" -> the types (each one lowbit can write); throws Argument naming `setting`.
std::vector<DType> parse_type_list(const std::string& setting, const std::string& list);

// "int<N>" (either case) -> N (validate() accepts 2..8); "ternary", "binary" -> 2 (their
// codes are int2); 0 for any other type name.
int affine_type_bits(const std::string& type);
// "ternary" / "binary" (either case) -> their levels; All for any other type name.
AffineLevels affine_type_levels(const std::string& type);

}  // namespace lowbit
