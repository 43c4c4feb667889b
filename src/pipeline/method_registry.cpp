// The registry of quantization methods and the QuantMethod defaults.
#include <fmt/ranges.h>

#include "lowbit/error.h"
#include "method.h"

namespace lowbit {
namespace pipeline {

const std::vector<const QuantMethod*>& registered_methods() {
  static const std::vector<const QuantMethod*> all = {&rtn_method(),      &imatrix_method(),
                                                      &gptq_method(),     &awq_method(),
                                                      &awq_gptq_method(), &smoothquant_method(),
                                                      &adaround_method(), &adaquant_method(),
                                                      &autoround_method(), &qat_method()};
  return all;
}

const QuantMethod& method_for(Method m) {
  for (const QuantMethod* q : registered_methods())
    if (q->kind() == m) return *q;
  fail(ErrorKind::Argument, "method {} is not available", method_name(m));
}

TargetKind target_kind(const Target& t) {
  if (std::holds_alternative<GgufTarget>(t)) return TargetKind::Gguf;
  if (std::holds_alternative<Fp8Target>(t)) return TargetKind::Fp8;
  return std::holds_alternative<AffineTarget>(t) ? TargetKind::Affine : TargetKind::W8A8;
}

void fail_target(Method m, TargetKind k) {
  const QuantMethod& q = method_for(m);
  std::string writes;
  for (auto [kind, what] : {std::pair{TargetKind::Gguf, "GGUF types"},
                            {TargetKind::Affine, "the affine int layout"},
                            {TargetKind::W8A8, "W8A8 (int8 weights and activations)"},
                            {TargetKind::Fp8, "FP8 weights"}})
    if (q.writes(kind)) writes += (writes.empty() ? "" : ", ") + std::string(what);
  const char* target = k == TargetKind::Gguf     ? "GGUF types"
                       : k == TargetKind::Affine ? "the affine int layout"
                       : k == TargetKind::Fp8    ? "FP8 weights"
                                                 : "W8A8";
  std::vector<std::string> others;
  for (const QuantMethod* o : registered_methods())
    if (o->writes(k)) others.push_back(method_name(o->kind()));
  fail(ErrorKind::Argument, "method {} writes {}, not {} (which takes {})", method_name(m), writes,
       target, fmt::join(others, ", "));
}

QuantizeReport QuantMethod::gguf(JobRun&, QuantizeOptions) const {
  fail_target(kind(), TargetKind::Gguf);
}
QuantizeReport QuantMethod::affine(JobRun&, const AffineSpec&) const {
  fail_target(kind(), TargetKind::Affine);
}
QuantizeReport QuantMethod::w8a8(JobRun&, const W8A8Target&) const {
  fail_target(kind(), TargetKind::W8A8);
}
QuantizeReport QuantMethod::fp8(JobRun&, const Fp8Target&) const {
  fail_target(kind(), TargetKind::Fp8);
}

}  // namespace pipeline

const char* method_name(Method m) {
  switch (m) {
    case Method::Default:
      return "default";
    case Method::Rtn:
      return "rtn";
    case Method::Imatrix:
      return "imatrix";
    case Method::Gptq:
      return "gptq";
    case Method::Awq:
      return "awq";
    case Method::AwqGptq:
      return "awq+gptq";
    case Method::SmoothQuant:
      return "smoothquant";
    case Method::AdaRound:
      return "adaround";
    case Method::AdaQuant:
      return "adaquant";
    case Method::AutoRound:
      return "autoround";
    case Method::Qat:
      return "qat";
  }
  return "?";
}

std::optional<Method> method_from_name(const std::string& name) {
  for (const pipeline::QuantMethod* q : pipeline::registered_methods())
    if (name == method_name(q->kind())) return q->kind();
  return std::nullopt;
}

std::vector<std::string> method_names() {
  std::vector<std::string> out;
  for (const pipeline::QuantMethod* q : pipeline::registered_methods())
    out.push_back(method_name(q->kind()));
  return out;
}

}  // namespace lowbit
