"""GPTQ, AWQ and compressed-tensors checkpoints written by lowbit, decoded by a NumPy
reference written from the formats' descriptions (GPTQModel/AutoGPTQ's shift-and-mask
unpacking, AutoAWQ's reverse nibble order, compressed-tensors' unpack_from_int32), against
what lowbit's loader reads."""
import json
import os
import struct

import numpy as np
import pytest

import lowbit

SHARED = os.environ.get("LOWBIT_SHARED") or os.environ["LOWBIT_SHARED_DEFAULT"]
MODEL = os.path.join(SHARED, "models", "tinyllm-8m")

# AutoAWQ unpacks a word's eight nibbles in order and then takes output p from nibble
# AWQ_REVERSE_ORDER[p].
AWQ_REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7]
DTYPES = {"I32": np.int32, "I64": np.int64, "F16": np.float16, "F32": np.float32}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        begin, end = h["data_offsets"]
        out[name] = np.frombuffer(data[begin:end], dtype=DTYPES[h["dtype"]]).reshape(h["shape"])
    return out


def unpack_words(words, bits, count):
    """Codes of `bits` bits from int32 words along axis 0, `count` of them per column."""
    words = words.astype(np.int64) & 0xFFFFFFFF
    if 32 % bits == 0:  # each word holds 32 / bits codes, the first in the lowest bits
        per = 32 // bits
        shifts = np.arange(per) * bits
        codes = (words[:, None, :] >> shifts[None, :, None]) & ((1 << bits) - 1)
        return codes.reshape(-1, words.shape[1])[:count]
    # 3 bits: the codes run on across word boundaries (three words hold 32 codes)
    bitplane = np.stack([(words >> b) & 1 for b in range(32)], axis=1)  # [words, 32, cols]
    stream = bitplane.reshape(-1, words.shape[1])[: count * bits]
    return (stream.reshape(count, bits, -1) * (1 << np.arange(bits))[None, :, None]).sum(axis=1)


def dequantize_gptq(t, base, q):
    bits = q["bits"]
    qweight, qzeros = t[base + ".qweight"], t[base + ".qzeros"]
    scales, g_idx = t[base + ".scales"].astype(np.float32), t[base + ".g_idx"]
    rows = scales.shape[1]
    codes = unpack_words(qweight, bits, len(g_idx))  # [inputs, outputs]
    zeros = unpack_words(qzeros.T, bits, rows).T  # [groups, outputs]
    if q.get("checkpoint_format", "gptq") == "gptq":
        zeros = zeros + 1
    return (scales[g_idx] * (codes - zeros[g_idx])).T  # [outputs, inputs]


def dequantize_awq(t, base, q):
    qweight, qzeros = t[base + ".qweight"], t[base + ".qzeros"]
    scales = t[base + ".scales"].astype(np.float32)

    def nibbles(words):  # [n, outputs/8] -> [n, outputs]
        w = words.astype(np.int64) & 0xFFFFFFFF
        packed = np.stack([(w >> (4 * k)) & 15 for k in range(8)], axis=2)  # [n, outputs/8, 8]
        return packed[:, :, AWQ_REVERSE_ORDER].reshape(w.shape[0], -1)

    codes, zeros = nibbles(qweight), nibbles(qzeros)  # [inputs, outputs], [groups, outputs]
    group = q["group_size"] if q["group_size"] > 0 else codes.shape[0]
    g = np.arange(codes.shape[0]) // group
    return (scales[g] * (codes - zeros[g])).T


def dequantize_compressed_tensors(t, base, q):
    weights = q["config_groups"]["group_0"]["weights"]
    bits = weights["num_bits"]
    rows, cols = (int(v) for v in t[base + ".weight_shape"])
    per = 32 // bits  # codes per int32, none split across two
    offset = 1 << (bits - 1)

    def unpack(words, n):  # along the last axis
        w = words.astype(np.int64) & 0xFFFFFFFF
        codes = np.stack([(w >> (bits * k)) & ((1 << bits) - 1) for k in range(per)], axis=-1)
        return codes.reshape(w.shape[0], -1)[:, :n]

    signed = unpack(t[base + ".weight_packed"], cols) - offset  # [rows, cols]
    scale = t[base + ".weight_scale"].astype(np.float32)  # [rows, groups]
    if weights["symmetric"]:
        zero = np.zeros_like(scale)
    else:  # packed down the outputs, stored with the same offset
        zero = unpack(t[base + ".weight_zero_point"].T, rows).T - offset
    group = weights["group_size"] or cols
    g = np.arange(cols) // group
    return (signed - zero[:, g]) * scale[:, g]


@pytest.mark.parametrize(
    "fmt,settings",
    [
        ("gptq", {"type": "int4", "group": 128}),
        ("gptq", {"type": "int3", "group": 64, "asym": True}),
        ("gptq", {"type": "int2", "group": 32}),
        ("gptq", {"type": "int8", "group": 0}),
        ("awq", {"type": "int4", "group": 64}),
        ("awq", {"type": "int4", "group": 128, "asym": True}),
        ("compressed-tensors", {"type": "int4", "group": 128}),
        ("compressed-tensors", {"type": "int3", "group": 32, "asym": True}),
        ("compressed-tensors", {"type": "int8", "group": 0}),
        ("compressed-tensors", {"type": "int6", "group": 64, "asym": True}),
    ],
)
def test_numpy_reference_reads_what_lowbit_reads(tmp_path, fmt, settings):
    out = tmp_path / "ck"
    lowbit.quantize(MODEL, out, format=fmt, progress=False, **settings)
    config = json.loads((out / "config.json").read_text())
    q = config["quantization_config"]
    assert q["quant_method"] == fmt
    bits = q["bits"] if "bits" in q else q["config_groups"]["group_0"]["weights"]["num_bits"]
    assert bits == int(settings["type"][3:])
    tensors = read_safetensors(out / "model.safetensors")
    model = lowbit.load(out)
    decode = {"gptq": dequantize_gptq, "awq": dequantize_awq,
              "compressed-tensors": dequantize_compressed_tensors}[fmt]
    checked = 0
    for base, name in [
        ("model.layers.0.self_attn.q_proj", "blk.0.attn_q.weight"),
        ("model.layers.1.self_attn.v_proj", "blk.1.attn_v.weight"),
        ("model.layers.3.mlp.down_proj", "blk.3.ffn_down.weight"),
        ("model.layers.7.mlp.gate_proj", "blk.7.ffn_gate.weight"),
    ]:
        ours = model.tensor(name)
        ref = decode(tensors, base, q)
        assert ref.shape == ours.shape
        np.testing.assert_array_equal(ref.astype(np.float32), ours)
        checked += 1
    assert checked == 4
    # and the weights are close to the source's (the codes are not noise)
    source = lowbit.load(MODEL)
    w = source.tensor("blk.3.ffn_down.weight")
    rel = np.linalg.norm(model.tensor("blk.3.ffn_down.weight") - w) / np.linalg.norm(w)
    assert rel < {"int8": 0.01, "int6": 0.04, "int4": 0.15, "int3": 0.3, "int2": 0.7}[settings["type"]]


def e4m3_table():
    """The 256 FP8 E4M3 (fn) values: sign, 4 exponent bits (bias 7), 3 mantissa bits;
    exponent 0 is subnormal, code 0x7f / 0xff is NaN and there is no infinity."""
    values = np.empty(256, dtype=np.float32)
    for code in range(256):
        sign = -1.0 if code & 0x80 else 1.0
        e, m = (code >> 3) & 15, code & 7
        if e == 15 and m == 7:
            values[code] = np.nan
        elif e == 0:
            values[code] = sign * (m / 8) * 2.0 ** -6
        else:
            values[code] = sign * (1 + m / 8) * 2.0 ** (e - 7)
    return values


@pytest.mark.parametrize("group", [0, -1])
def test_numpy_reference_reads_fp8_weights(tmp_path, group):
    out = tmp_path / "fp8"
    lowbit.quantize(MODEL, out, type="fp8", group=group, progress=False)
    q = json.loads((out / "config.json").read_text())["quantization_config"]
    assert q["format"] == "float-quantized"
    header_dtypes = {}
    with open(out / "model.safetensors", "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    for name, h in header.items():
        if name != "__metadata__":
            header_dtypes[name] = h["dtype"]
    table = e4m3_table()
    model, source = lowbit.load(out), lowbit.load(MODEL)
    for base, name in [("model.layers.0.self_attn.k_proj", "blk.0.attn_k.weight"),
                       ("model.layers.6.mlp.up_proj", "blk.6.ffn_up.weight")]:
        h, s = header[base + ".weight"], header[base + ".weight_scale"]
        assert h["dtype"] == "F8_E4M3" and s["dtype"] == "F32"
        codes = np.frombuffer(data[slice(*h["data_offsets"])], dtype=np.uint8).reshape(h["shape"])
        scale = np.frombuffer(data[slice(*s["data_offsets"])], dtype=np.float32).reshape(s["shape"])
        assert scale.shape == ((1,) if group == -1 else (codes.shape[0], 1))
        ref = table[codes] * (scale if group == 0 else scale[0])
        np.testing.assert_array_equal(ref, model.tensor(name))
        w = source.tensor(name)
        assert np.linalg.norm(ref - w) / np.linalg.norm(w) < 0.05
    assert set(header_dtypes.values()) >= {"F8_E4M3", "F32", "F16"}
