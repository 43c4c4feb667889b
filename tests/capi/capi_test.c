/* The C API from C11: every entry point on tinyllm-8m, its errors, and cancellation.
 *   capi_test SHARED_DIR TMP_DIR            run the checks (exit 0 when all hold)
 *   capi_test --job MODEL OUTPUT NAME=VALUE...   run one job (for the cross-front-end test) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lowbit.h"

static int failures = 0, checks = 0;

#define CHECK(cond, ...)                                         \
  do {                                                           \
    ++checks;                                                    \
    if (!(cond)) {                                               \
      ++failures;                                                \
      fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                              \
      fprintf(stderr, "\n");                                     \
    }                                                            \
  } while (0)

static int run_job(int argc, char** argv) {
  lowbit_job* job = NULL;
  if (lowbit_job_new(argv[2], argv[3], &job) != LOWBIT_OK)
    return fprintf(stderr, "%s\n", lowbit_last_error()), 1;
  for (int i = 4; i < argc; ++i) {
    char* eq = strchr(argv[i], '=');
    if (!eq) return fprintf(stderr, "expected NAME=VALUE, got %s\n", argv[i]), 1;
    *eq = '\0';
    if (lowbit_job_set(job, argv[i], eq + 1) != LOWBIT_OK)
      return fprintf(stderr, "%s\n", lowbit_last_error()), 1;
  }
  const lowbit_status s = lowbit_job_run(job, NULL, NULL, NULL);
  if (s != LOWBIT_OK) fprintf(stderr, "%s\n", lowbit_last_error());
  lowbit_job_free(job);
  return s == LOWBIT_OK ? 0 : 1;
}

static int cancel_after_three(const char* stage, size_t done, size_t total, const char* item,
                              void* user) {
  (void)stage, (void)total, (void)item;
  ++*(int*)user;
  return done < 3;
}

static void check_model(const char* model_dir) {
  lowbit_model* m = NULL;
  CHECK(lowbit_model_load("/nonexistent/model", NULL, &m) == LOWBIT_ERROR_IO, "status");
  CHECK(strstr(lowbit_last_error(), "/nonexistent/model") != NULL, "message: %s",
        lowbit_last_error());
  CHECK(lowbit_model_load(model_dir, NULL, &m) == LOWBIT_OK, "%s", lowbit_last_error());
  const size_t n = lowbit_model_tensor_count(m);
  CHECK(n > 10, "tensors: %zu", n);
  lowbit_tensor_info info;
  int found = 0;
  for (size_t i = 0; i < n; ++i) {
    CHECK(lowbit_model_tensor(m, i, &info) == LOWBIT_OK, "%s", lowbit_last_error());
    if (strcmp(info.name, "blk.0.attn_q.weight") != 0) continue;
    found = 1;
    CHECK(info.n_dims == 2, "dims %d", info.n_dims);
    const uint64_t values = info.shape[0] * info.shape[1];
    float* w = malloc(values * sizeof(float));
    CHECK(lowbit_model_tensor_f32(m, i, w, values - 1) == LOWBIT_ERROR_ARGUMENT,
          "a short buffer is refused");
    CHECK(lowbit_model_tensor_f32(m, i, w, values) == LOWBIT_OK, "%s", lowbit_last_error());
    /* Q8_0 round trip of a real weight: small relative error. */
    uint64_t row_bytes = 0;
    CHECK(lowbit_type_row_bytes("Q8_0", info.shape[1], &row_bytes) == LOWBIT_OK, "%s",
          lowbit_last_error());
    unsigned char* q = malloc(row_bytes * info.shape[0]);
    float* back = malloc(values * sizeof(float));
    CHECK(lowbit_quantize_rows("Q8_0", w, info.shape[0], info.shape[1], NULL, 0, q,
                               row_bytes * info.shape[0]) == LOWBIT_OK,
          "%s", lowbit_last_error());
    CHECK(lowbit_dequantize_rows("Q8_0", q, info.shape[0], info.shape[1], back) == LOWBIT_OK, "%s",
          lowbit_last_error());
    double err = 0, norm = 0;
    for (uint64_t k = 0; k < values; ++k)
      err += (w[k] - back[k]) * (w[k] - back[k]), norm += w[k] * w[k];
    CHECK(sqrt(err / norm) < 0.01, "Q8_0 relative error %g", sqrt(err / norm));
    CHECK(lowbit_quantize_rows("Q9_Z", w, 1, info.shape[1], NULL, 0, q, row_bytes) ==
              LOWBIT_ERROR_ARGUMENT,
          "bad type");
    CHECK(strstr(lowbit_last_error(), "Q9_Z") != NULL, "message: %s", lowbit_last_error());
    free(w), free(q), free(back);
  }
  CHECK(found, "blk.0.attn_q.weight listed");
  CHECK(lowbit_model_tensor(m, n, &info) == LOWBIT_ERROR_ARGUMENT, "index past the end");
  lowbit_model_free(m);
}

static void check_job(const char* model_dir, const char* text, const char* tmp) {
  char out[4096];
  snprintf(out, sizeof out, "%s/capi-q4km.gguf", tmp);
  lowbit_job* job = NULL;
  CHECK(lowbit_job_new(model_dir, out, &job) == LOWBIT_OK, "%s", lowbit_last_error());
  CHECK(lowbit_job_set(job, "no-such-setting", "1") == LOWBIT_ERROR_ARGUMENT, "unknown setting");
  CHECK(strstr(lowbit_last_error(), "no-such-setting") != NULL, "message: %s", lowbit_last_error());
  CHECK(lowbit_job_set(job, "calib-samples", "many") == LOWBIT_ERROR_ARGUMENT, "bad number");
  CHECK(lowbit_job_set(job, "type", "Q4_K_M") == LOWBIT_OK, "%s", lowbit_last_error());
  CHECK(lowbit_job_set(job, "method", "gptq") == LOWBIT_OK, "%s", lowbit_last_error());
  CHECK(lowbit_job_run(job, NULL, NULL, NULL) == LOWBIT_ERROR_ARGUMENT, "gptq without calibration");
  CHECK(strstr(lowbit_last_error(), "calibration") != NULL, "message: %s", lowbit_last_error());
  CHECK(access(out, F_OK) != 0, "no output after a refused job");

  /* Cancelled on the third tensor: no file left behind. */
  CHECK(lowbit_job_set(job, "method", "rtn") == LOWBIT_OK, "%s", lowbit_last_error());
  int calls = 0;
  CHECK(lowbit_job_run(job, cancel_after_three, &calls, NULL) == LOWBIT_ERROR_CANCELLED,
        "cancel: %s", lowbit_last_error());
  CHECK(calls == 3, "progress calls before the cancel: %d", calls);
  CHECK(access(out, F_OK) != 0, "no output after a cancel");

  lowbit_report* report = NULL;
  CHECK(lowbit_job_run(job, NULL, NULL, &report) == LOWBIT_OK, "%s", lowbit_last_error());
  lowbit_report_summary sum;
  CHECK(lowbit_report_summary_get(report, &sum) == LOWBIT_OK, "%s", lowbit_last_error());
  CHECK(sum.bits_per_weight > 4.5 && sum.bits_per_weight < 6, "Q4_K_M bpw %g", sum.bits_per_weight);
  CHECK(strcmp(sum.method, "rtn") == 0, "method %s", sum.method);
  lowbit_tensor_report t;
  CHECK(lowbit_report_tensor(report, 0, &t) == LOWBIT_OK, "%s", lowbit_last_error());
  CHECK(t.name != NULL && t.bytes > 0, "first tensor");
  lowbit_report_free(report);
  lowbit_job_free(job);

  lowbit_model *base = NULL, *q = NULL;
  CHECK(lowbit_model_load(model_dir, NULL, &base) == LOWBIT_OK, "%s", lowbit_last_error());
  CHECK(lowbit_model_load(out, NULL, &q) == LOWBIT_OK, "%s", lowbit_last_error());
  const lowbit_eval_options eo = {128, 4, 0};
  lowbit_eval_result ppl_base, ppl_q, kld;
  CHECK(lowbit_perplexity(base, text, &eo, NULL, NULL, &ppl_base) == LOWBIT_OK, "%s",
        lowbit_last_error());
  CHECK(lowbit_perplexity(q, text, &eo, NULL, NULL, &ppl_q) == LOWBIT_OK, "%s",
        lowbit_last_error());
  CHECK(ppl_base.ppl > 1 && ppl_base.ppl < 1000 && ppl_base.n_chunks == 4, "base PPL %g over %zu",
        ppl_base.ppl, ppl_base.n_chunks);
  CHECK(lowbit_kl_divergence(base, q, text, &eo, NULL, NULL, &kld) == LOWBIT_OK, "%s",
        lowbit_last_error());
  CHECK(kld.has_kld && kld.kld_mean > 0 && kld.kld_mean < 0.1, "KLD %g", kld.kld_mean);
  CHECK(fabs(kld.ppl - ppl_q.ppl) < 1e-9 * ppl_q.ppl, "the KLD run's PPL %g is the model's %g",
        kld.ppl, ppl_q.ppl);
  lowbit_generate_options go = {8, 0.0f, 0, 1.0f, 1, 0};
  char* text_out = NULL;
  CHECK(lowbit_generate(base, "Once upon a time", &go, &text_out) == LOWBIT_OK, "%s",
        lowbit_last_error());
  CHECK(text_out && strlen(text_out) > 0, "generated text");
  lowbit_string_free(text_out);
  lowbit_model_free(base);
  lowbit_model_free(q);
}

int main(int argc, char** argv) {
  if (argc >= 4 && strcmp(argv[1], "--job") == 0) return run_job(argc, argv);
  if (argc != 3)
    return fprintf(stderr, "usage: capi_test SHARED_DIR TMP_DIR | --job MODEL OUT NAME=VALUE...\n"),
           2;
  char model[4096], text[4096];
  snprintf(model, sizeof model, "%s/models/tinyllm-8m", argv[1]);
  snprintf(text, sizeof text, "%s/data/wikitext-2/wikitext-2-test.txt", argv[1]);
  if (access(model, F_OK) != 0)
    return fprintf(stderr, "missing asset %s (set LOWBIT_SHARED)\n", model), 1;
  check_model(model);
  check_job(model, text, argv[2]);
  printf("%d passed, %d failed\n", checks - failures, failures);
  return failures ? 1 : 0;
}
