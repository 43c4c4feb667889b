// The C API (lowbit.h) over the library: handles own C++ objects; every entry point turns
// exceptions into a status and this thread's last message.
#include <cstring>
#include <new>
#include <string>

#include "lowbit.h"
#include "lowbit/error.h"
#include "lowbit/eval.h"
#include "lowbit/file_io.h"
#include "lowbit/generate.h"
#include "lowbit/gptq.h"
#include "lowbit/job_options.h"
#include "lowbit/quant.h"
#include "lowbit/tokenizer.h"

struct lowbit_model {
  lowbit::Model model;
  std::vector<std::string> type_names;  // per tensor, for lowbit_tensor_info::type
};
struct lowbit_job {
  lowbit::JobSettings settings;
};
struct lowbit_report {
  lowbit::QuantizeReport report;
  std::vector<std::string> type_names;
};

namespace {

thread_local std::string last_error;

lowbit_status status_of(lowbit::ErrorKind k) {
  switch (k) {
    case lowbit::ErrorKind::Io:
      return LOWBIT_ERROR_IO;
    case lowbit::ErrorKind::Format:
      return LOWBIT_ERROR_FORMAT;
    case lowbit::ErrorKind::Unsupported:
      return LOWBIT_ERROR_UNSUPPORTED;
    case lowbit::ErrorKind::Argument:
      return LOWBIT_ERROR_ARGUMENT;
    case lowbit::ErrorKind::Cancelled:
      return LOWBIT_ERROR_CANCELLED;
  }
  return LOWBIT_ERROR_INTERNAL;
}

// Runs fn, mapping what it throws to a status and a message.
template <typename Fn>
lowbit_status guarded(Fn&& fn) {
  try {
    last_error.clear();
    fn();
    return LOWBIT_OK;
  } catch (const lowbit::Error& e) {
    last_error = e.what();
    return status_of(e.kind());
  } catch (const std::bad_alloc&) {
    last_error = "out of memory";
  } catch (const std::exception& e) {
    last_error = std::string("internal error: ") + e.what();
  } catch (...) {
    last_error = "internal error";
  }
  return LOWBIT_ERROR_INTERNAL;
}

void require(const void* p, const char* what) {
  if (!p) lowbit::fail(lowbit::ErrorKind::Argument, "{} is NULL", what);
}

// v[index], or an Argument error naming what holds it ("the model", "the report").
template <typename V>
const typename V::value_type& element(const V& v, size_t index, const char* holder) {
  if (index >= v.size())
    lowbit::fail(lowbit::ErrorKind::Argument, "tensor index {}: {} has {}", index, holder,
                 v.size());
  return v[index];
}

lowbit::DType type_named(const char* name) {
  require(name, "type");
  const auto t = lowbit::dtype_from_name(name);
  if (!t) lowbit::fail(lowbit::ErrorKind::Argument, "type '{}': not a type lowbit knows", name);
  return *t;
}

uint64_t row_bytes(lowbit::DType t, uint64_t cols) {
  uint64_t out = 0;
  if (!lowbit::tensor_bytes(t, cols, cols, &out))
    lowbit::fail(lowbit::ErrorKind::Argument, "rows of {} values do not fit {} blocks of {}", cols,
                 lowbit::dtype_name(t), lowbit::traits(t).block_size);
  return out;
}

void check_out_bytes(uint64_t have, uint64_t need) {
  if (have != need)
    lowbit::fail(lowbit::ErrorKind::Argument, "output buffer has {} bytes, the rows need {}", have,
                 need);
}

lowbit::Observer observer_of(lowbit_progress_fn fn, void* user) {
  if (!fn) return {};
  return [fn, user](const lowbit::Progress& p) {
    return fn(lowbit::stage_name(p.stage), p.done, p.total, p.item.c_str(), user) != 0;
  };
}

lowbit::PerplexityOptions eval_options(const lowbit_eval_options* o,
                                       const lowbit::Observer& observer) {
  lowbit::PerplexityOptions po;
  if (o && o->ctx) po.n_ctx = o->ctx;
  if (o) po.max_chunks = o->max_chunks;
  if (observer)
    po.on_chunk = [observer](size_t c, size_t n, double, double) {
      lowbit::report_progress(observer, {lowbit::Stage::Perplexity, c, n});
    };
  return po;
}

void fill_eval(const lowbit::PerplexityResult& r, lowbit_eval_result* out) {
  *out = {};
  out->ppl = r.ppl;
  out->ppl_stderr = r.ppl_stderr;
  out->n_tokens = r.n_tokens;
  out->n_chunks = r.n_chunks;
  if (r.kld) {
    out->has_kld = 1;
    out->kld_mean = r.kld->mean;
    out->kld_p99 = r.kld->p99;
    out->kld_max = r.kld->max;
    out->same_top1 = r.kld->same_top1;
    out->ppl_base = r.kld->ppl_base;
  }
}

std::vector<int32_t> text_tokens(const lowbit::Model& m, const char* path) {
  require(path, "text path");
  return lowbit::Tokenizer::create(m.vocab, m.source)->encode(lowbit::read_text_file(path), true);
}

lowbit::EngineOptions engine_options(const lowbit::Model& m, const lowbit_eval_options* o) {
  const uint32_t ctx =
      o && o->ctx ? o->ctx : std::min(512u, m.config.n_ctx ? m.config.n_ctx : 512u);
  lowbit::EngineOptions eo{o ? o->threads : 0, ctx};
  eo.fast = !(o && o->reference_kernels);  // as the CLI's perplexity
  return eo;
}

}  // namespace

extern "C" {

const char* lowbit_version(void) {
  return "0.1.0";
}
const char* lowbit_last_error(void) {
  return last_error.c_str();
}

lowbit_status lowbit_model_load(const char* path, const char* tokenizer, lowbit_model** out) {
  return guarded([&] {
    require(path, "model path");
    require(out, "out");
    auto h = std::make_unique<lowbit_model>();
    h->model = lowbit::load_model(path, {tokenizer ? tokenizer : ""});
    for (const auto& t : h->model.tensors) h->type_names.push_back(lowbit::dtype_name(t.dtype));
    *out = h.release();
  });
}

void lowbit_model_free(lowbit_model* model) {
  delete model;
}

size_t lowbit_model_tensor_count(const lowbit_model* model) {
  return model ? model->model.tensors.size() : 0;
}

lowbit_status lowbit_model_tensor(const lowbit_model* model, size_t index,
                                  lowbit_tensor_info* out) {
  return guarded([&] {
    require(model, "model");
    require(out, "out");
    const lowbit::TensorView& t = element(model->model.tensors, index, "the model");
    if (t.shape.size() > 4)
      lowbit::fail(lowbit::ErrorKind::Unsupported, "tensor '{}' has {} dimensions", t.name,
                   t.shape.size());
    *out = {};
    out->name = t.name.c_str();
    out->type = model->type_names[index].c_str();
    out->n_dims = static_cast<int>(t.shape.size());
    for (size_t i = 0; i < t.shape.size(); ++i) out->shape[i] = t.shape[i];
    out->data = t.data;
    out->nbytes = t.nbytes;
  });
}

lowbit_status lowbit_model_tensor_f32(const lowbit_model* model, size_t index, float* out,
                                      uint64_t n_values) {
  return guarded([&] {
    require(model, "model");
    require(out, "out");
    const lowbit::TensorView& t = element(model->model.tensors, index, "the model");
    if (n_values != t.n_values())
      lowbit::fail(lowbit::ErrorKind::Argument, "tensor '{}' has {} values, the buffer {}", t.name,
                   t.n_values(), n_values);
    lowbit::to_f32(t, out);
  });
}

lowbit_status lowbit_job_new(const char* model_path, const char* output_path, lowbit_job** out) {
  return guarded([&] {
    require(model_path, "model path");
    require(output_path, "output path");
    require(out, "out");
    auto h = std::make_unique<lowbit_job>();
    h->settings.job.model = model_path;
    h->settings.job.output = output_path;
    *out = h.release();
  });
}

lowbit_status lowbit_job_set(lowbit_job* job, const char* name, const char* value) {
  return guarded([&] {
    require(job, "job");
    require(name, "setting name");
    require(value, "setting value");
    lowbit::set_job_option(job->settings, name, value);
  });
}

void lowbit_job_free(lowbit_job* job) {
  delete job;
}

lowbit_status lowbit_job_run(const lowbit_job* job, lowbit_progress_fn progress, void* user,
                             lowbit_report** report) {
  return guarded([&] {
    require(job, "job");
    auto h = std::make_unique<lowbit_report>();
    h->report =
        lowbit::run_quantize_job(lowbit::make_job(job->settings), observer_of(progress, user));
    for (const auto& t : h->report.tensors) h->type_names.push_back(lowbit::dtype_name(t.type));
    if (report) *report = h.release();
  });
}

lowbit_status lowbit_report_summary_get(const lowbit_report* report, lowbit_report_summary* out) {
  return guarded([&] {
    require(report, "report");
    require(out, "out");
    const lowbit::QuantizeReport& r = report->report;
    *out = {r.method.c_str(), r.tensors.size(),  r.n_weights, r.total_bytes,
            r.file_bytes,     r.bits_per_weight, r.seconds};
  });
}

lowbit_status lowbit_report_tensor(const lowbit_report* report, size_t index,
                                   lowbit_tensor_report* out) {
  return guarded([&] {
    require(report, "report");
    require(out, "out");
    const lowbit::TensorReport& t = element(report->report.tensors, index, "the report");
    *out = {t.name.c_str(),
            report->type_names[index].c_str(),
            t.bytes,
            t.rel_rms_error,
            t.rel_output_error,
            t.note.c_str()};
  });
}

void lowbit_report_free(lowbit_report* report) {
  delete report;
}

lowbit_status lowbit_perplexity(const lowbit_model* model, const char* text_path,
                                const lowbit_eval_options* options, lowbit_progress_fn progress,
                                void* user, lowbit_eval_result* out) {
  return guarded([&] {
    require(model, "model");
    require(out, "out");
    lowbit::Engine engine(model->model, engine_options(model->model, options));
    const auto po = eval_options(options, observer_of(progress, user));
    fill_eval(lowbit::evaluate_perplexity(engine, text_tokens(model->model, text_path), po), out);
  });
}

lowbit_status lowbit_kl_divergence(const lowbit_model* base, const lowbit_model* model,
                                   const char* text_path, const lowbit_eval_options* options,
                                   lowbit_progress_fn progress, void* user,
                                   lowbit_eval_result* out) {
  return guarded([&] {
    require(base, "base model");
    require(model, "model");
    require(out, "out");
    lowbit::Engine b(base->model, engine_options(base->model, options));
    lowbit::Engine m(model->model, engine_options(model->model, options));
    const auto po = eval_options(options, observer_of(progress, user));
    fill_eval(lowbit::evaluate_kl_divergence(b, m, text_tokens(base->model, text_path), po), out);
  });
}

lowbit_status lowbit_generate(const lowbit_model* model, const char* prompt,
                              const lowbit_generate_options* options, char** text) {
  return guarded([&] {
    require(model, "model");
    require(prompt, "prompt");
    require(options, "options");
    require(text, "text");
    const lowbit::Model& m = model->model;
    auto tok = lowbit::Tokenizer::create(m.vocab, m.source);
    auto ids = tok->encode(prompt, true);
    if (ids.empty()) ids.push_back(m.vocab.bos);
    lowbit::EngineOptions eo{options->threads,
                             lowbit::generation_context(m, ids.size(), options->n_predict)};
    eo.fast = true;
    lowbit::Engine engine(m, eo);
    lowbit::GenerateOptions g;
    g.n_predict = options->n_predict;
    g.sampler = {options->temperature, options->top_k, options->top_p, options->seed};
    const auto out = lowbit::generate(engine, ids, g);
    const std::string before = tok->decode(ids);
    std::vector<int32_t> all = ids;
    all.insert(all.end(), out.begin(), out.end());
    const std::string after = tok->decode(all);
    const std::string added = after.substr(std::min(before.size(), after.size()));
    char* s = static_cast<char*>(std::malloc(added.size() + 1));
    if (!s) throw std::bad_alloc();
    std::memcpy(s, added.c_str(), added.size() + 1);
    *text = s;
  });
}

void lowbit_string_free(char* s) {
  std::free(s);
}

lowbit_status lowbit_type_row_bytes(const char* type, uint64_t cols, uint64_t* out) {
  return guarded([&] {
    require(out, "out");
    *out = row_bytes(type_named(type), cols);
  });
}

lowbit_status lowbit_quantize_rows(const char* type, const float* x, uint64_t rows, uint64_t cols,
                                   const float* importance, int threads, void* out,
                                   uint64_t out_bytes) {
  return guarded([&] {
    const lowbit::DType t = type_named(type);
    require(x, "x");
    require(out, "out");
    if (!lowbit::can_quantize_to(t))
      lowbit::fail(lowbit::ErrorKind::Argument, "type {}: lowbit cannot quantize to it", type);
    check_out_bytes(out_bytes, rows * row_bytes(t, cols));
    lowbit::quantize_rows(t, x, rows, cols, importance, threads, static_cast<uint8_t*>(out));
  });
}

lowbit_status lowbit_dequantize_rows(const char* type, const void* data, uint64_t rows,
                                     uint64_t cols, float* out) {
  return guarded([&] {
    const lowbit::DType t = type_named(type);
    require(data, "data");
    require(out, "out");
    if (!lowbit::can_dequantize(t))
      lowbit::fail(lowbit::ErrorKind::Argument, "type {}: lowbit cannot read it", type);
    row_bytes(t, cols);  // checks the rows fit the blocks
    lowbit::dequantize_values(t, static_cast<const uint8_t*>(data), rows * cols, out);
  });
}

lowbit_status lowbit_gptq_rows(const char* type, const float* w, uint64_t rows, uint64_t cols,
                               const double* hessian, double damp, int act_order, int threads,
                               void* out, uint64_t out_bytes) {
  return guarded([&] {
    const lowbit::DType t = type_named(type);
    require(w, "w");
    require(hessian, "hessian");
    require(out, "out");
    check_out_bytes(out_bytes, rows * row_bytes(t, cols));
    lowbit::GptqOptions g;
    g.damp = damp;
    g.act_order = act_order != 0;
    g.n_threads = threads;
    const std::vector<double> h(hessian, hessian + cols * cols);
    lowbit::gptq_quantize_rows(t, w, rows, cols, h, nullptr, g, static_cast<uint8_t*>(out));
  });
}

}  // extern "C"
