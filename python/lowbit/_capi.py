"""ctypes declarations of lowbit.h: the one place the Python package meets the C API."""
import ctypes
import os

from ctypes import (CFUNCTYPE, POINTER, Structure, c_char_p, c_double, c_float, c_int, c_size_t, c_uint32,
                    c_uint64, c_void_p)

STATUS_NAMES = {1: "io", 2: "format", 3: "unsupported", 4: "argument", 5: "cancelled", 6: "internal"}
CANCELLED = 5

PROGRESS = CFUNCTYPE(c_int, c_char_p, c_size_t, c_size_t, c_char_p, c_void_p)


class TensorInfo(Structure):
    _fields_ = [("name", c_char_p), ("type", c_char_p), ("n_dims", c_int), ("shape", c_uint64 * 4),
                ("data", c_void_p), ("nbytes", c_uint64)]


class ReportSummary(Structure):
    _fields_ = [("method", c_char_p), ("n_tensors", c_size_t), ("n_weights", c_uint64), ("tensor_bytes", c_uint64),
                ("file_bytes", c_uint64), ("bits_per_weight", c_double), ("seconds", c_double)]


class TensorReport(Structure):
    _fields_ = [("name", c_char_p), ("type", c_char_p), ("bytes", c_uint64), ("rel_rms_error", c_double),
                ("rel_output_error", c_double), ("note", c_char_p)]


class EvalOptions(Structure):
    _fields_ = [("ctx", c_uint32), ("max_chunks", c_size_t), ("threads", c_int), ("reference_kernels", c_int)]


class EvalResult(Structure):
    _fields_ = [("ppl", c_double), ("ppl_stderr", c_double), ("n_tokens", c_size_t), ("n_chunks", c_size_t),
                ("has_kld", c_int), ("kld_mean", c_double), ("kld_p99", c_double), ("kld_max", c_double),
                ("same_top1", c_double), ("ppl_base", c_double)]


class GenerateOptions(Structure):
    _fields_ = [("n_predict", c_size_t), ("temperature", c_float), ("top_k", c_int), ("top_p", c_float),
                ("seed", c_uint64), ("threads", c_int)]


def _library_path():
    if os.environ.get("LOWBIT_LIBRARY"):
        return os.environ["LOWBIT_LIBRARY"]
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        from ._build_config import LIBRARY  # written by the build next to the package
        return LIBRARY
    except ImportError:
        return os.path.join(here, "liblowbit.so")


def load():
    lib = ctypes.CDLL(_library_path())
    sig = {
        "lowbit_version": (c_char_p, []),
        "lowbit_last_error": (c_char_p, []),
        "lowbit_model_load": (c_int, [c_char_p, c_char_p, POINTER(c_void_p)]),
        "lowbit_model_free": (None, [c_void_p]),
        "lowbit_model_tensor_count": (c_size_t, [c_void_p]),
        "lowbit_model_tensor": (c_int, [c_void_p, c_size_t, POINTER(TensorInfo)]),
        "lowbit_model_tensor_f32": (c_int, [c_void_p, c_size_t, c_void_p, c_uint64]),
        "lowbit_job_new": (c_int, [c_char_p, c_char_p, POINTER(c_void_p)]),
        "lowbit_job_set": (c_int, [c_void_p, c_char_p, c_char_p]),
        "lowbit_job_free": (None, [c_void_p]),
        "lowbit_job_run": (c_int, [c_void_p, PROGRESS, c_void_p, POINTER(c_void_p)]),
        "lowbit_report_summary_get": (c_int, [c_void_p, POINTER(ReportSummary)]),
        "lowbit_report_tensor": (c_int, [c_void_p, c_size_t, POINTER(TensorReport)]),
        "lowbit_report_free": (None, [c_void_p]),
        "lowbit_perplexity": (c_int, [c_void_p, c_char_p, POINTER(EvalOptions), PROGRESS, c_void_p, POINTER(EvalResult)]),
        "lowbit_kl_divergence": (c_int, [c_void_p, c_void_p, c_char_p, POINTER(EvalOptions), PROGRESS, c_void_p,
                                         POINTER(EvalResult)]),
        "lowbit_generate": (c_int, [c_void_p, c_char_p, POINTER(GenerateOptions), POINTER(c_void_p)]),
        "lowbit_string_free": (None, [c_void_p]),
        "lowbit_type_row_bytes": (c_int, [c_char_p, c_uint64, POINTER(c_uint64)]),
        "lowbit_quantize_rows": (c_int, [c_char_p, c_void_p, c_uint64, c_uint64, c_void_p, c_int, c_void_p, c_uint64]),
        "lowbit_dequantize_rows": (c_int, [c_char_p, c_void_p, c_uint64, c_uint64, c_void_p]),
        "lowbit_gptq_rows": (c_int, [c_char_p, c_void_p, c_uint64, c_uint64, c_void_p, c_double, c_int, c_int, c_void_p,
                                     c_uint64]),
    }
    for name, (restype, argtypes) in sig.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib
