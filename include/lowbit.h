/* lowbit's C API (C11): load a model, describe and run a quantization job, measure
 * perplexity and KL divergence, generate text, and quantize arrays.
 *
 * Conventions:
 *  - Every call returns a lowbit_status; LOWBIT_OK is 0. On failure lowbit_last_error()
 *    gives the message (naming the file, tensor or setting), valid until the calling
 *    thread's next lowbit call. No C++ exception crosses this boundary.
 *  - Objects are opaque handles made by *_new / *_load / *_run and released by *_free
 *    (NULL is accepted). Strings returned inside a handle live as long as the handle.
 *  - Threads: 0 means every core.
 *  - Progress: a lowbit_progress_fn is called after each step of a long operation; it
 *    returns nonzero to go on and 0 to cancel, which stops the call with
 *    LOWBIT_ERROR_CANCELLED and leaves no output file.
 */
#ifndef LOWBIT_H
#define LOWBIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lowbit_status {
  LOWBIT_OK = 0,
  LOWBIT_ERROR_IO = 1,          /* a file cannot be opened, read or written */
  LOWBIT_ERROR_FORMAT = 2,      /* a file's bytes do not follow its format */
  LOWBIT_ERROR_UNSUPPORTED = 3, /* valid input lowbit does not handle */
  LOWBIT_ERROR_ARGUMENT = 4,    /* a bad setting, type name, shape or value */
  LOWBIT_ERROR_CANCELLED = 5,   /* the progress callback asked to stop */
  LOWBIT_ERROR_INTERNAL = 6     /* a bug or an exhausted resource (out of memory) */
} lowbit_status;

const char* lowbit_version(void);
const char* lowbit_last_error(void);

/* stage: "calibrate", "sensitivity", "block", "tensor" or "perplexity"; item: a tensor name or "".
 */
typedef int (*lowbit_progress_fn)(const char* stage, size_t done, size_t total, const char* item,
                                  void* user);

/* ---- models ---------------------------------------------------------------------- */

typedef struct lowbit_model lowbit_model;

typedef struct lowbit_tensor_info {
  const char* name; /* GGUF name, e.g. "blk.0.attn_q.weight" */
  const char* type; /* "F32", "Q4_K", ... */
  int n_dims;
  uint64_t shape[4]; /* outermost first: a matrix is [rows, cols] */
  const void* data;  /* the stored bytes (mapped from the file) */
  uint64_t nbytes;
} lowbit_tensor_info;

/* tokenizer: a llama2.c tokenizer .bin, or NULL for the one beside the model. */
lowbit_status lowbit_model_load(const char* path, const char* tokenizer, lowbit_model** out);
void lowbit_model_free(lowbit_model* model);
size_t lowbit_model_tensor_count(const lowbit_model* model);
lowbit_status lowbit_model_tensor(const lowbit_model* model, size_t index, lowbit_tensor_info* out);
/* The tensor's values as f32 (dequantized); n_values must be its number of values. */
lowbit_status lowbit_model_tensor_f32(const lowbit_model* model, size_t index, float* out,
                                      uint64_t n_values);

/* ---- quantization jobs ------------------------------------------------------------- */

typedef struct lowbit_job lowbit_job;
typedef struct lowbit_report lowbit_report;

lowbit_status lowbit_job_new(const char* model_path, const char* output_path, lowbit_job** out);
/* A setting by the name of `lowbit quantize`'s long flag without dashes: "type" (Q4_K_M,
 * Q4_K, int4, w8a8), "method" (rtn, imatrix, gptq, awq, awq+gptq, smoothquant), "calib",
 * "calib-samples", "damp", "group", "max-size", ...; switches take "true" or "false". */
lowbit_status lowbit_job_set(lowbit_job* job, const char* name, const char* value);
void lowbit_job_free(lowbit_job* job);
/* Validates and runs the job; `report` (may be NULL) receives the report on success. */
lowbit_status lowbit_job_run(const lowbit_job* job, lowbit_progress_fn progress, void* user,
                             lowbit_report** report);

typedef struct lowbit_report_summary {
  const char* method; /* as written in the file's metadata */
  size_t n_tensors;
  uint64_t n_weights, tensor_bytes, file_bytes;
  double bits_per_weight, seconds;
} lowbit_report_summary;

typedef struct lowbit_tensor_report {
  const char* name;
  const char* type;
  uint64_t bytes;
  double rel_rms_error;    /* ||W - Q(W)|| / ||W|| */
  double rel_output_error; /* the layer's output error on the calibration inputs; 0 without */
  const char* note;
} lowbit_tensor_report;

lowbit_status lowbit_report_summary_get(const lowbit_report* report, lowbit_report_summary* out);
lowbit_status lowbit_report_tensor(const lowbit_report* report, size_t index,
                                   lowbit_tensor_report* out);
void lowbit_report_free(lowbit_report* report);

/* ---- evaluation -------------------------------------------------------------------- */

typedef struct lowbit_eval_options {
  uint32_t ctx;      /* window length (0: 512) */
  size_t max_chunks; /* 0: every full window of the text */
  int threads;
  int reference_kernels; /* 1: the fp32 reference engine (weights dequantized, BLAS); 0: the
                            fast kernels (8-bit activations; on AVX-512 VNNI the weights are
                            also kept repacked, about 1.1-1.3 bytes per weight, during the run) */
} lowbit_eval_options;

typedef struct lowbit_eval_result {
  double ppl, ppl_stderr;
  size_t n_tokens, n_chunks;
  int has_kld; /* the fields below are set by lowbit_kl_divergence */
  double kld_mean, kld_p99, kld_max, same_top1;
  double ppl_base;
} lowbit_eval_result;

/* Perplexity on a text file (llama.cpp's protocol: the second half of each window scored),
   by default on the fast kernels (on tinyllm-8m within 0.1% of the fp32 reference for every
   type; options->reference_kernels selects the reference). */
lowbit_status lowbit_perplexity(const lowbit_model* model, const char* text_path,
                                const lowbit_eval_options* options, lowbit_progress_fn progress,
                                void* user, lowbit_eval_result* out);
/* KL divergence of `model`'s next-token distributions from `base`'s on the same windows. */
lowbit_status lowbit_kl_divergence(const lowbit_model* base, const lowbit_model* model,
                                   const char* text_path, const lowbit_eval_options* options,
                                   lowbit_progress_fn progress, void* user,
                                   lowbit_eval_result* out);

/* ---- generation -------------------------------------------------------------------- */

typedef struct lowbit_generate_options {
  size_t n_predict;
  float temperature; /* 0: greedy */
  int top_k;         /* 0: no limit */
  float top_p;       /* 1: no limit */
  uint64_t seed;
  int threads;
} lowbit_generate_options;

/* The prompt's continuation, as text; free it with lowbit_string_free. */
lowbit_status lowbit_generate(const lowbit_model* model, const char* prompt,
                              const lowbit_generate_options* options, char** text);
void lowbit_string_free(char* s);

/* ---- arrays ------------------------------------------------------------------------ */

/* Bytes of `rows` rows of `cols` values stored as `type` ("Q4_K", "Q8_0", "F16", ...). */
lowbit_status lowbit_type_row_bytes(const char* type, uint64_t cols, uint64_t* out);
/* Rounds to nearest (importance: cols values or NULL) into out (rows * row_bytes bytes). */
lowbit_status lowbit_quantize_rows(const char* type, const float* x, uint64_t rows, uint64_t cols,
                                   const float* importance, int threads, void* out,
                                   uint64_t out_bytes);
lowbit_status lowbit_dequantize_rows(const char* type, const void* data, uint64_t rows,
                                     uint64_t cols, float* out);
/* GPTQ of w [rows, cols] with the Hessian H [cols, cols] (row-major doubles) onto `type`. */
lowbit_status lowbit_gptq_rows(const char* type, const float* w, uint64_t rows, uint64_t cols,
                               const double* hessian, double damp, int act_order, int threads,
                               void* out, uint64_t out_bytes);

#ifdef __cplusplus
}
#endif

#endif /* LOWBIT_H */
