// lowbit convert MODEL -o OUT.gguf|OUT.safetensors [--type auto|f32|f16|bf16] [--tokenizer T]
//                [--calib TEXT]
#include <fmt/core.h>

#include "commands.h"
#include "lowbit/affine.h"
#include "lowbit/error.h"
#include "lowbit/file_io.h"
#include "lowbit/model.h"
#include "quantize_flags.h"

namespace lowbit::cli {

Action add_convert(CLI::App& app) {
  struct Opts {
    std::string model, out, type = "auto", tokenizer, calib;
    size_t calib_samples = 128, calib_ctx = 512;
    int threads = 0;
    bool json = false, quiet = false;
  };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand(
      "convert", "Convert a model (HF directory, GGUF, llama2.c) to GGUF or safetensors");
  c->add_option("model", o->model, "model directory, .gguf file or llama2.c .bin")->required();
  c->add_option("-o,--output", o->out, "output file: *.gguf or *.safetensors")->required();
  c->add_option("--type", o->type,
                "element type of the matrices: f32, f16, bf16, or auto: f16, but an integer "
                "checkpoint (lowbit, GPTQ, AWQ, compressed-tensors) to GGUF keeps each linear's "
                "codes in the block "
                "type that holds its grid (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) and rounds the others "
                "onto the K type of as many bits")
      ->capture_default_str();
  c->add_option("--tokenizer", o->tokenizer, "llama2.c tokenizer .bin");
  c->add_option("--calib", o->calib,
                "integer checkpoints to GGUF: calibration text; the linears whose grid no GGUF "
                "type holds are rounded by GPTQ with its Hessians instead of to nearest");
  c->add_option("--calib-samples", o->calib_samples, "--calib: windows")->capture_default_str();
  c->add_option("--calib-ctx", o->calib_ctx, "--calib: tokens per window")->capture_default_str();
  add_threads_option(c, o->threads);
  c->add_flag("--json", o->json, "integer checkpoints: print the summary as JSON on stdout");
  c->add_flag("-q,--quiet", o->quiet, "no table");
  return [o]() {
    const bool automatic = o->type == "auto";
    auto dt = automatic ? std::optional<DType>(DType::F16) : dtype_from_name(o->type);
    if (!dt || (*dt != DType::F32 && *dt != DType::F16 && *dt != DType::BF16))
      fail(ErrorKind::Argument, "--type '{}': expected auto, f32, f16 or bf16", o->type);
    check_output_path(o->out, {o->model, o->tokenizer, o->calib});
    auto ends_with = [&](const char* s) {
      std::string suf(s);
      return o->out.size() >= suf.size() &&
             o->out.compare(o->out.size() - suf.size(), suf.size(), suf) == 0;
    };
    if (!ends_with(".gguf") && !ends_with(".safetensors"))
      fail(ErrorKind::Argument, "-o '{}': the output name must end in .gguf or .safetensors",
           o->out);
    Model m = load_model(o->model, {o->tokenizer});
    const bool keep_codes = automatic && ends_with(".gguf") && !m.affine_weights.empty();
    if (!o->calib.empty() && !keep_codes)
      fail(ErrorKind::Argument,
           "--calib applies to an integer checkpoint written as GGUF with --type auto");
    if (keep_codes) {
      std::optional<CalibrationStats> stats;
      if (!o->calib.empty()) {
        CalibrationOptions co;
        co.n_samples = o->calib_samples, co.n_ctx = o->calib_ctx, co.n_threads = o->threads;
        co.hessian = true;
        stats = collect_calibration_stats(m, o->calib, co);
      }
      const QuantizeReport r =
          write_affine_checkpoint_gguf(m, o->out, o->threads, {}, stats ? &*stats : nullptr);
      print_quantize_report(r, o->out, o->json, o->quiet);
      size_t kept = 0, rounded = 0;
      for (const TensorReport& t : r.tensors)
        if (m.affine_weights.count(t.name)) ++(t.note == "codes kept" ? kept : rounded);
      fmt::print(stderr,
                 "wrote {} ({} linears with their codes kept, {} rounded again; {:.3f} bpw)\n",
                 o->out, kept, rounded, r.bits_per_weight);
      return 0;
    }
    if (ends_with(".gguf"))
      write_model_gguf(m, o->out, *dt);
    else
      write_model_safetensors(m, o->out, *dt);
    fmt::print(stderr, "wrote {} ({} tensors, {})\n", o->out, m.tensors.size(), dtype_name(*dt));
    return 0;
  };
}

}  // namespace lowbit::cli
