"""lowbit: quantize, evaluate and run Llama-family models on the CPU.

A thin layer over liblowbit's C API (lowbit.h) through ctypes: the library does the work,
this package turns Python values into its settings and its results into Python objects.

    import lowbit
    report = lowbit.quantize("tinyllm-8m", "out.gguf", type="Q4_K_M", method="gptq", calib="calib.txt")
    base, q = lowbit.load("tinyllm-8m"), lowbit.load("out.gguf")
    print(lowbit.kl_divergence(base, q, "wiki.test.txt", chunks=20))
"""
import ctypes
import signal
import sys
import threading

from . import _capi
from ._progress import ProgressBar

__all__ = ["LowbitError", "Cancelled", "Model", "Report", "EvalResult", "load", "quantize", "perplexity",
           "kl_divergence", "generate", "quantize_array", "dequantize_array", "gptq", "row_bytes", "version"]

_lib = _capi.load()


class LowbitError(Exception):
    """A lowbit call failed; `kind` is io, format, unsupported, argument, cancelled or internal."""

    def __init__(self, status, message):
        super().__init__(message)
        self.kind = _capi.STATUS_NAMES.get(status, "internal")


class Cancelled(LowbitError):
    """The progress callback (or Ctrl-C) stopped the call; no output file was left."""


def _check(status):
    if status == 0:
        return
    message = _lib.lowbit_last_error().decode("utf-8", "replace")
    raise (Cancelled if status == _capi.CANCELLED else LowbitError)(status, message)


def version():
    return _lib.lowbit_version().decode()


class _Interruptible:
    """Runs a long C call with a progress callback that also cancels on Ctrl-C.

    progress: None (a bar on stderr when it is a terminal), False (nothing), or
    callable(stage, done, total, item) returning False to cancel."""

    def __init__(self, progress):
        if progress is None:
            progress = ProgressBar() if sys.stderr.isatty() else False
        self.user = progress or None
        self.interrupted = False
        self.error = None
        self.callback = _capi.PROGRESS(self._step)

    def _step(self, stage, done, total, item, _):
        if self.interrupted:
            return 0
        if self.user is None:
            return 1
        try:
            return 0 if self.user(stage.decode(), done, total, item.decode("utf-8", "replace")) is False else 1
        except BaseException as e:  # an exception cannot cross the C frames: keep it, cancel, raise after
            self.error = e
            return 0

    def run(self, call):
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, self._on_sigint) if main else None
        try:
            status = call(self.callback)
        finally:
            if main:  # None: a handler installed outside Python, which cannot be put back from here
                signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
        if self.error is not None:
            raise self.error
        if self.interrupted:
            raise KeyboardInterrupt
        _check(status)

    def _on_sigint(self, *_):
        self.interrupted = True


class Model:
    """A loaded model: tensors by GGUF name, as NumPy arrays."""

    def __init__(self, path, tokenizer=None):
        self._handle = ctypes.c_void_p()
        _check(_lib.lowbit_model_load(str(path).encode(), tokenizer.encode() if tokenizer else None,
                                      ctypes.byref(self._handle)))
        self.path = str(path)
        self._infos = []
        for i in range(_lib.lowbit_model_tensor_count(self._handle)):
            info = _capi.TensorInfo()
            _check(_lib.lowbit_model_tensor(self._handle, i, ctypes.byref(info)))
            self._infos.append(info)
        self._index = {info.name.decode(): i for i, info in enumerate(self._infos)}

    def __del__(self):
        if getattr(self, "_handle", None):
            _lib.lowbit_model_free(self._handle)
            self._handle = None

    def names(self):
        return list(self._index)

    def __contains__(self, name):
        return name in self._index

    def __len__(self):
        return len(self._index)

    def info(self, name):
        """(type, shape) of a tensor as stored."""
        i = self._find(name)
        return self._infos[i].type.decode(), self._shape(i)

    def raw(self, name):
        """The stored bytes, without a copy (a read-only view of the mapped file: do not make it
        writeable; it keeps the model alive)."""
        import numpy as np
        info = self._infos[self._find(name)]
        if info.nbytes == 0:
            return np.zeros(0, dtype=np.uint8)
        buffer = (ctypes.c_uint8 * info.nbytes).from_address(info.data)
        buffer._model = self
        array = np.frombuffer(buffer, dtype=np.uint8)
        array.flags.writeable = False
        return array

    def tensor(self, name):
        """The values: F32 and F16 tensors without a copy (read-only), other types dequantized to f32."""
        import numpy as np
        i = self._find(name)
        kind, shape = self._infos[i].type.decode(), self._shape(i)
        if kind in ("F32", "F16"):
            return self.raw(name).view(np.float32 if kind == "F32" else np.float16).reshape(shape)
        out = np.empty(shape, dtype=np.float32)
        _check(_lib.lowbit_model_tensor_f32(self._handle, i, out.ctypes.data, out.size))
        return out

    def __getitem__(self, name):
        return self.tensor(name)

    def _find(self, name):
        if name not in self._index:
            raise KeyError(f"{self.path} has no tensor '{name}'")
        return self._index[name]

    def _shape(self, i):
        info = self._infos[i]
        return tuple(info.shape[k] for k in range(info.n_dims))


def load(path, tokenizer=None):
    """A model from a Hugging Face directory, a .gguf file or a llama2.c .bin."""
    return Model(path, tokenizer)


class Report:
    """What quantize() wrote: totals and one entry per tensor."""

    def __init__(self, handle):
        summary = _capi.ReportSummary()
        _check(_lib.lowbit_report_summary_get(handle, ctypes.byref(summary)))
        self.method = summary.method.decode()
        self.n_weights = summary.n_weights
        self.tensor_bytes = summary.tensor_bytes
        self.file_bytes = summary.file_bytes
        self.bits_per_weight = summary.bits_per_weight
        self.seconds = summary.seconds
        self.tensors = []
        for i in range(summary.n_tensors):
            t = _capi.TensorReport()
            _check(_lib.lowbit_report_tensor(handle, i, ctypes.byref(t)))
            self.tensors.append({"name": t.name.decode(), "type": t.type.decode(), "bytes": t.bytes,
                                 "rel_rms_error": t.rel_rms_error, "rel_output_error": t.rel_output_error,
                                 "note": t.note.decode()})

    def __repr__(self):
        return (f"Report(method={self.method!r}, bits_per_weight={self.bits_per_weight:.3f}, "
                f"file_bytes={self.file_bytes}, tensors={len(self.tensors)})")


def _setting_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def quantize(model, out, type="Q4_K_M", method=None, calib=None, progress=None, **settings):
    """Quantizes `model` into `out` and returns a Report.

    type: a preset (Q4_K_M), a type for every matrix (Q4_K), int2..int8 or w8a8.
    method: rtn, imatrix, gptq, awq, awq+gptq, adaround, adaquant, autoround, smoothquant
    (default: gptq with calib, imatrix with saved stats, else rtn; Report.method says which ran).
    settings: any other `lowbit quantize` flag, dashes as underscores (calib_samples=16,
    damp=0.1, max_size="4MB", tensor_type=["blk\\.0\\..*=Q8_0"], awq_clip=True,
    format="gptq" for int types, ...).
    """
    job = ctypes.c_void_p()
    _check(_lib.lowbit_job_new(str(model).encode(), str(out).encode(), ctypes.byref(job)))
    try:
        pairs = [("type", type), ("method", method), ("calib", calib)] + list(settings.items())
        for name, value in pairs:
            if value is None:
                continue
            for v in value if isinstance(value, (list, tuple)) else [value]:
                _check(_lib.lowbit_job_set(job, name.replace("_", "-").encode(), _setting_text(v).encode()))
        report = ctypes.c_void_p()
        _Interruptible(progress).run(lambda cb: _lib.lowbit_job_run(job, cb, None, ctypes.byref(report)))
        try:
            return Report(report)
        finally:
            _lib.lowbit_report_free(report)
    finally:
        _lib.lowbit_job_free(job)


class EvalResult(dict):
    """ppl, ppl_stderr, n_tokens, n_chunks; with a base model also kld_mean, kld_p99, kld_max, same_top1, ppl_base."""

    __getattr__ = dict.__getitem__


def _eval(call, with_kld, ctx, chunks, threads, progress, kernels):
    if kernels not in ("fast", "reference"):
        raise ValueError(f"kernels must be 'fast' or 'reference', not {kernels!r}")
    options = _capi.EvalOptions(ctx, chunks, threads, kernels == "reference")
    result = _capi.EvalResult()
    _Interruptible(progress).run(lambda cb: call(ctypes.byref(options), cb, ctypes.byref(result)))
    names = ["ppl", "ppl_stderr", "n_tokens", "n_chunks"]
    if with_kld:
        names += ["kld_mean", "kld_p99", "kld_max", "same_top1", "ppl_base"]
    return EvalResult({n: getattr(result, n) for n in names})


def _model(m):
    return m if isinstance(m, Model) else Model(m)


def perplexity(model, text, ctx=512, chunks=0, threads=0, progress=None, kernels="fast"):
    """Perplexity of `model` on the text file (llama.cpp's protocol); kernels: "fast" (8-bit
    activations) or "reference" (fp32)."""
    m = _model(model)
    return _eval(lambda o, cb, r: _lib.lowbit_perplexity(m._handle, str(text).encode(), o, cb, None, r), False, ctx, chunks,
                 threads, progress, kernels)


def kl_divergence(base, model, text, ctx=512, chunks=0, threads=0, progress=None, kernels="fast"):
    """KL divergence of `model`'s next-token distributions from `base`'s, with `model`'s perplexity."""
    b, m = _model(base), _model(model)
    return _eval(lambda o, cb, r: _lib.lowbit_kl_divergence(b._handle, m._handle, str(text).encode(), o, cb, None, r), True,
                 ctx, chunks, threads, progress, kernels)


def generate(model, prompt, n_predict=64, temperature=0.8, top_k=40, top_p=0.95, seed=0, threads=0):
    """The prompt's continuation as text."""
    m = _model(model)
    options = _capi.GenerateOptions(n_predict, temperature, top_k, top_p, seed, threads)
    text = ctypes.c_void_p()
    _check(_lib.lowbit_generate(m._handle, prompt.encode(), ctypes.byref(options), ctypes.byref(text)))
    try:
        return ctypes.string_at(text).decode("utf-8", "replace")
    finally:
        _lib.lowbit_string_free(text)


def row_bytes(type, cols):
    """Bytes of one row of `cols` values stored as `type`."""
    out = ctypes.c_uint64()
    _check(_lib.lowbit_type_row_bytes(type.encode(), cols, ctypes.byref(out)))
    return out.value


def _matrix(a):
    import numpy as np
    a = np.ascontiguousarray(a, dtype=np.float32)
    if a.ndim == 1:
        a = a.reshape(1, -1)
    if a.ndim != 2:
        raise ValueError(f"expected a matrix [rows, cols], got shape {a.shape}")
    return a


def quantize_array(a, type, importance=None, threads=0):
    """Rows of `a` rounded to `type` (Q4_K, Q8_0, IQ4_NL, F16, ...): uint8 [rows, row_bytes]."""
    import numpy as np
    a = _matrix(a)
    rows, cols = a.shape
    imp = None
    if importance is not None:
        imp = np.ascontiguousarray(importance, dtype=np.float32)
        if imp.shape != (cols,):
            raise ValueError(f"importance has shape {imp.shape}, expected ({cols},)")
    out = np.empty((rows, row_bytes(type, cols)), dtype=np.uint8)
    _check(_lib.lowbit_quantize_rows(type.encode(), a.ctypes.data, rows, cols,
                                     None if imp is None else imp.ctypes.data, threads, out.ctypes.data, out.size))
    return out


def dequantize_array(q, type, cols):
    """f32 [rows, cols] from the bytes quantize_array wrote."""
    import numpy as np
    q = np.ascontiguousarray(q, dtype=np.uint8)
    rb = row_bytes(type, cols)
    if q.size % rb:
        raise ValueError(f"{q.size} bytes are not whole rows of {rb} bytes ({type}, {cols} values)")
    rows = q.size // rb
    out = np.empty((rows, cols), dtype=np.float32)
    _check(_lib.lowbit_dequantize_rows(type.encode(), q.ctypes.data, rows, cols, out.ctypes.data))
    return out


def gptq(w, hessian, type, damp=0.01, act_order=False, threads=0):
    """GPTQ of w [rows, cols] onto `type` with the Hessian [cols, cols] of its inputs: uint8 [rows, row_bytes]."""
    import numpy as np
    w = _matrix(w)
    rows, cols = w.shape
    h = np.ascontiguousarray(hessian, dtype=np.float64)
    if h.shape != (cols, cols):
        raise ValueError(f"hessian has shape {h.shape}, expected ({cols}, {cols})")
    out = np.empty((rows, row_bytes(type, cols)), dtype=np.uint8)
    _check(_lib.lowbit_gptq_rows(type.encode(), w.ctypes.data, rows, cols, h.ctypes.data, damp, int(act_order), threads,
                                 out.ctypes.data, out.size))
    return out
