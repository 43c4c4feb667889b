#!/usr/bin/env python3
"""Writes the binary seed corpora of the fuzz targets into fuzz/corpus/<target>/.

Every file is built here from scratch (nothing comes from a real model): tiny valid files of
each format, a few KB at most, plus a few broken ones (truncated, wrong magic, bad offsets) so
that the fuzzers start next to the error paths too. Deterministic: running it again rewrites
the same bytes. Usage: python3 fuzz/make_seeds.py [corpus_dir]
"""
import json
import os
import struct
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")


def save(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def f32s(values):
    return struct.pack("<%df" % len(values), *values)


def ramp(n, scale=0.01):
    """n distinct small floats (deterministic, no RNG)."""
    return [((i * 37) % 101 - 50) * scale for i in range(n)]


# --- GGUF ---------------------------------------------------------------------------------
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
GGML_F32, GGML_F16, GGML_Q8_0 = 0, 1, 8


def gguf_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_scalar(t, v):
    fmt = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
           BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}
    return gguf_str(v) if t == STRING else struct.pack(fmt[t], v)


def gguf_value(t, v):
    """t is a type id, or (ARRAY, elem_type) with v a list (nested arrays: elem_type a tuple)."""
    if isinstance(t, tuple):
        elem = t[1]
        elem_id = elem[0] if isinstance(elem, tuple) else elem
        out = struct.pack("<IQ", elem_id, len(v))
        return out + b"".join(gguf_value(elem, x) for x in v)
    return gguf_scalar(t, v)


def gguf(kvs, tensors, version=3, alignment=32):
    """kvs: [(key, type, value)]; tensors: [(name, shape outermost first, ggml type, bytes)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, t, v in kvs:
        out += gguf_str(key) + struct.pack("<I", t[0] if isinstance(t, tuple) else t)
        out += gguf_value(t, v)
    offset, blobs = 0, []
    for name, shape, ggml_type, data in tensors:
        out += gguf_str(name) + struct.pack("<I", len(shape))
        out += b"".join(struct.pack("<Q", d) for d in reversed(shape))
        out += struct.pack("<IQ", ggml_type, offset)
        blobs.append((offset, data))
        offset += (len(data) + alignment - 1) // alignment * alignment
    out += b"\0" * (-len(out) % alignment)
    data = bytearray(offset)
    for off, blob in blobs:
        data[off:off + len(blob)] = blob
    return out + bytes(data)


def f32_tensor(name, shape, scale=0.01):
    n = 1
    for d in shape:
        n *= d
    return (name, shape, GGML_F32, f32s(ramp(n, scale)))


def model_tensors(D, F, Q, KV, V, layers, tied=True, bias=False, qk_norm=False, head_dim=0):
    t = [f32_tensor("token_embd.weight", [V, D]), f32_tensor("output_norm.weight", [D], 0.1)]
    if not tied:
        t.append(f32_tensor("output.weight", [V, D]))
    for l in range(layers):
        b = "blk.%d." % l
        t += [f32_tensor(b + "attn_norm.weight", [D], 0.1), f32_tensor(b + "attn_q.weight", [Q, D]),
              f32_tensor(b + "attn_k.weight", [KV, D]), f32_tensor(b + "attn_v.weight", [KV, D]),
              f32_tensor(b + "attn_output.weight", [D, Q]),
              f32_tensor(b + "ffn_norm.weight", [D], 0.1),
              f32_tensor(b + "ffn_gate.weight", [F, D]),
              f32_tensor(b + "ffn_up.weight", [F, D]), f32_tensor(b + "ffn_down.weight", [D, F])]
        if bias:
            t += [f32_tensor(b + "attn_q.bias", [Q]), f32_tensor(b + "attn_k.bias", [KV]),
                  f32_tensor(b + "attn_v.bias", [KV])]
        if qk_norm:
            t += [f32_tensor(b + "attn_q_norm.weight", [head_dim]),
                  f32_tensor(b + "attn_k_norm.weight", [head_dim])]
    return t


SPM_TOKENS = ["<unk>", "<s>", "</s>", "<0x0A>", "\u2581", "a", "b", "\u2581a", "ab", "\u2581ab",
              "H", "e", "l", "o"]
SPM_TYPES = [2, 3, 3, 6] + [1] * (len(SPM_TOKENS) - 4)
BPE_TOKENS = ["H", "e", "l", "o", "\u0120", "w", "He", "ll", "Hell", "\u0120w", "<|endoftext|>",
              "<|im_start|>"]
BPE_TYPES = [1] * 10 + [3, 3]


def llama_gguf():
    D, F, heads, kv_heads, hd = 8, 8, 2, 1, 4
    V = len(SPM_TOKENS)
    kvs = [("general.architecture", STRING, "llama"), ("general.name", STRING, "seed"),
           ("general.alignment", U32, 32),
           ("llama.context_length", U32, 64), ("llama.embedding_length", U32, D),
           ("llama.block_count", U32, 1), ("llama.feed_forward_length", U32, F),
           ("llama.attention.head_count", U32, heads),
           ("llama.attention.head_count_kv", U32, kv_heads),
           ("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
           ("llama.rope.freq_base", F32, 10000.0),
           ("tokenizer.ggml.model", STRING, "llama"),
           ("tokenizer.ggml.tokens", (ARRAY, STRING), SPM_TOKENS),
           ("tokenizer.ggml.scores", (ARRAY, F32), [-float(i) for i in range(V)]),
           ("tokenizer.ggml.token_type", (ARRAY, I32), SPM_TYPES),
           ("tokenizer.ggml.bos_token_id", U32, 1), ("tokenizer.ggml.eos_token_id", U32, 2),
           ("tokenizer.ggml.unknown_token_id", U32, 0),
           ("tokenizer.ggml.add_bos_token", BOOL, True),
           ("tokenizer.ggml.add_space_prefix", BOOL, True)]
    return gguf(kvs, model_tensors(D, F, heads * hd, kv_heads * hd, V, 1))


def qwen_gguf(arch):
    D, F, heads, kv_heads, hd = 8, 8, 2, 2, 4
    V = len(BPE_TOKENS)
    a = arch + "."
    kvs = [("general.architecture", STRING, arch), (a + "context_length", U32, 32),
           (a + "embedding_length", U32, D), (a + "block_count", U32, 1),
           (a + "feed_forward_length", U32, F), (a + "attention.head_count", U32, heads),
           (a + "attention.head_count_kv", U32, kv_heads), (a + "attention.key_length", U32, hd),
           (a + "attention.layer_norm_rms_epsilon", F32, 1e-6),
           (a + "rope.freq_base", F32, 1000000.0),
           (a + "rope.scaling.type", STRING, "linear"), (a + "rope.scaling.factor", F32, 2.0),
           ("tokenizer.ggml.model", STRING, "gpt2"), ("tokenizer.ggml.pre", STRING, "qwen2"),
           ("tokenizer.ggml.tokens", (ARRAY, STRING), BPE_TOKENS),
           ("tokenizer.ggml.token_type", (ARRAY, I32), BPE_TYPES),
           ("tokenizer.ggml.merges", (ARRAY, STRING), ["H e", "l l", "He ll", "\u0120 w"]),
           ("tokenizer.ggml.eos_token_id", U32, 10), ("tokenizer.ggml.padding_token_id", U32, 10),
           ("tokenizer.ggml.add_bos_token", BOOL, False)]
    qwen3 = arch == "qwen3"
    return gguf(kvs, model_tensors(D, F, heads * hd, kv_heads * hd, V, 1, tied=False,
                                   bias=not qwen3, qk_norm=qwen3, head_dim=hd))


def container_gguf():
    """Every metadata type, nested arrays, v2, F16 and Q8_0 tensors: the container alone."""
    kvs = [("u8", U8, 7), ("i8", I8, -7), ("u16", U16, 700), ("i16", I16, -700),
           ("u32", U32, 70000), ("i32", I32, -70000), ("f32", F32, 0.5), ("bool", BOOL, True),
           ("str", STRING, "text \u00e9"), ("u64", U64, 1 << 40), ("i64", I64, -(1 << 40)),
           ("f64", F64, 2.5), ("arr.u8", (ARRAY, U8), [1, 2, 3]),
           ("arr.nested", (ARRAY, (ARRAY, I16)), [[1, -2], [3]]),
           ("arr.empty", (ARRAY, STRING), []), ("general.alignment", U32, 64)]
    q8 = struct.pack("<e", 0.25) + bytes(range(32))  # one Q8_0 block: f16 scale, 32 int8
    tensors = [("h", [2, 4], GGML_F16, struct.pack("<8e", *ramp(8))),
               ("q", [1, 32], GGML_Q8_0, q8), f32_tensor("f", [3])]
    return gguf(kvs, tensors, version=2, alignment=64)


def imatrix_gguf(legacy_names=False):
    kvs = [("general.type", STRING, "imatrix"), ("imatrix.chunk_count", U32, 4),
           ("imatrix.chunk_size", U32, 16), ("lowbit.calibration.dataset", STRING, "seed.txt")]
    sums = ".sums" if legacy_names else ".in_sum2"
    tensors = []
    for w, cols in (("blk.0.attn_q.weight", 4), ("blk.0.ffn_down.weight", 8)):
        tensors += [(w + sums, [cols], GGML_F32, f32s([0.5 + i for i in range(cols)])),
                    (w + ".counts", [1], GGML_F32, f32s([64.0]))]
        if not legacy_names:
            tensors.append((w + ".in_absmax", [cols], GGML_F32, f32s([1.0] * cols)))
    if not legacy_names:
        tensors.append(("blk.0.attn_q.weight.in_hessian", [4, 4], GGML_F32,
                        f32s([1.0 if i % 5 == 0 else 0.1 for i in range(16)])))
    return gguf(kvs, tensors)


def imatrix_dat():
    out = struct.pack("<i", 2)
    for name, vals in (("blk.0.attn_q.weight", [1.0, 2.0, 3.0, 4.0]),
                       ("blk.0.ffn_down.weight", [0.5] * 8)):
        b = name.encode()
        out += struct.pack("<i", len(b)) + b + struct.pack("<ii", 10, len(vals)) + f32s(vals)
    out += struct.pack("<i", 10) + struct.pack("<i", 8) + b"seed.txt"
    return out


# --- safetensors --------------------------------------------------------------------------
def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape, bytes)]"""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, blob in tensors:
        end = len(data) + len(blob)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), end]}
        data += blob
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


# --- SentencePiece tokenizer.model ----------------------------------------------------------
def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def pb_bytes(field, payload):
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def pb_varint(field, v):
    return varint(field << 3) + varint(v & 0xFFFFFFFFFFFFFFFF)


def spm_model(model_type=2, add_dummy_prefix=True, extra_trainer=b""):
    out = b""
    for i, (piece, t) in enumerate(zip(SPM_TOKENS, SPM_TYPES)):
        sp = pb_bytes(1, piece.encode()) + varint(2 << 3 | 5) + struct.pack("<f", -float(i))
        if t != 1:
            sp += pb_varint(3, t)
        out += pb_bytes(1, sp)
    trainer = pb_varint(3, model_type) + pb_varint(35, 1) + pb_varint(40, 0) + pb_varint(41, 1)
    trainer += pb_varint(42, 2) + pb_varint(43, -1) + pb_bytes(1, b"input.txt") + extra_trainer
    out += pb_bytes(2, trainer)
    out += pb_bytes(3, pb_bytes(1, b"identity") + pb_varint(3, int(add_dummy_prefix)))
    return out


# --- llama2.c -------------------------------------------------------------------------------
def llama2c_tokenizer(tokens, max_len=8):
    out = struct.pack("<i", max_len)
    for i, t in enumerate(tokens):
        b = t.encode()
        out += struct.pack("<fi", -float(i), len(b)) + b
    return out


LLAMA2C_TOKENS = ["<unk>", "\n<s>\n", "\n</s>\n", "<0x0A>", " ", "a", "b", " a", "ab", " ab",
                  "H", "e", "l", "o", "He", "llo"]


def llama2c_checkpoint(dim=4, hidden=8, layers=1, heads=1, kv_heads=1, vocab=8, seq_len=2):
    kv = dim // heads * kv_heads
    out = struct.pack("<7i", dim, hidden, layers, heads, kv_heads, vocab, seq_len)
    V, L = abs(vocab), layers
    n = V * dim + L * dim + L * dim * dim + 2 * L * kv * dim + L * dim * dim + L * dim
    n += 3 * L * hidden * dim + dim + seq_len * (dim // heads)
    if vocab < 0:
        n += V * dim
    return out + f32s(ramp(n))


# --- logits ---------------------------------------------------------------------------------
def logits(n_vocab=8, top_k=0, n_records=3):
    n_ctx, n_chunks = 4, 1
    tokens = [1, 5, 6, 7]
    out = b"LBLOGIT1" + struct.pack("<6I", n_ctx, n_vocab, n_chunks, 0, top_k, 1)
    out += struct.pack("<Q", len(tokens)) + struct.pack("<%di" % len(tokens), *tokens)
    for r in range(n_records):
        out += struct.pack("<f", -1.5 - r)
        if top_k == 0:
            out += struct.pack("<%de" % n_vocab, *[-(i + r) * 0.5 - 0.1 for i in range(n_vocab)])
        else:
            for i in range(top_k):
                out += struct.pack("<if", (i * 3 + r) % n_vocab, -0.2 - i)
    return out


def main():
    # GGUF models and containers
    llama = llama_gguf()
    save("gguf", "llama_spm.gguf", llama)
    save("gguf", "qwen2_bpe.gguf", qwen_gguf("qwen2"))
    save("gguf", "qwen3_qknorm.gguf", qwen_gguf("qwen3"))
    save("gguf", "container_v2.gguf", container_gguf())
    save("gguf", "truncated.gguf", llama[:len(llama) // 3])
    save("gguf", "bad_version.gguf", b"GGUF" + struct.pack("<IQQ", 4, 0, 0))
    save("gguf", "empty_v3.gguf", gguf([], []))

    # safetensors
    st = safetensors([("model.embed_tokens.weight", "F32", [4, 2], f32s(ramp(8))),
                      ("model.norm.weight", "F16", [2], struct.pack("<2e", 1.0, 0.5)),
                      ("model.layers.0.mlp.up_proj.weight", "BF16", [2, 2], b"\x80\x3f" * 4)],
                     metadata={"format": "pt", "lowbit.note": "seed"})
    save("safetensors", "three_dtypes.safetensors", st)
    save("safetensors", "int_types.safetensors",
         safetensors([("i8", "I8", [3], b"\x01\xff\x7f"), ("i32", "I32", [1], b"\x01\0\0\0"),
                      ("u8", "U8", [2], b"ab"), ("b", "BOOL", [1], b"\x01"),
                      ("f8", "F8_E4M3", [2], b"\x38\xb8"),
                      ("f64", "F64", [1], struct.pack("<d", 2.0)),
                      ("scalar", "F32", [], f32s([1.0])), ("empty", "F32", [0, 3], b"")]))
    save("safetensors", "bad_offsets.safetensors",
         safetensors([("a", "F32", [2], f32s([1, 2]))]).replace(b"[0,8]", b"[4,12]"))
    save("safetensors", "truncated.safetensors", st[:40])

    # shard index (the harness writes model-0000{1,2}-of-00002.safetensors beside it)
    wm = {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
          "model.norm.weight": "model-00001-of-00002.safetensors",
          "lm_head.weight": "model-00002-of-00002.safetensors",
          "model.layers.0.mlp.up_proj.weight": "model-00002-of-00002.safetensors"}
    index = {"metadata": {"total_size": 32, "format": "pt"}, "weight_map": wm}
    save("safetensors_index", "two_shards.json", json.dumps(index, indent=1))
    save("safetensors_index", "one_shard.json", json.dumps(
        {"weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}}))
    save("safetensors_index", "wrong_shard.json", json.dumps(
        {"weight_map": {"lm_head.weight": "model-00001-of-00002.safetensors"}}))
    save("safetensors_index", "missing_shard.json", json.dumps(
        {"weight_map": {"x": "model-00003-of-00003.safetensors"}}))
    save("safetensors_index", "not_object.json", '{"weight_map": ["a", "b"]}')

    # SentencePiece
    save("spm_model", "bpe.model", spm_model())
    save("spm_model", "no_dummy_prefix.model", spm_model(add_dummy_prefix=False))
    save("spm_model", "unigram.model", spm_model(model_type=1))
    save("spm_model", "truncated.model", spm_model()[:50])

    # llama2.c checkpoints (the harness writes tokenizer.bin with vocab_size tokens beside them)
    save("llama2c", "tied.bin", llama2c_checkpoint())
    save("llama2c", "gqa_untied.bin", llama2c_checkpoint(dim=8, hidden=4, heads=2, kv_heads=1,
                                                          vocab=-6, seq_len=1))
    save("llama2c", "two_layers.bin", llama2c_checkpoint(layers=2, vocab=4, seq_len=1))
    save("llama2c", "short.bin", llama2c_checkpoint()[:60])
    save("llama2c", "odd_head_dim.bin", llama2c_checkpoint(dim=6, hidden=2, heads=2, vocab=3,
                                                           seq_len=1))

    # llama2.c tokenizer: u16 n_vocab, then the file
    tok = llama2c_tokenizer(LLAMA2C_TOKENS)
    save("llama2c_tokenizer", "sixteen.bin", struct.pack("<H", 16) + tok)
    save("llama2c_tokenizer", "fewer.bin", struct.pack("<H", 8) + tok)
    save("llama2c_tokenizer", "more_than_file.bin", struct.pack("<H", 40) + tok)
    save("llama2c_tokenizer", "bad_max_len.bin", struct.pack("<Hi", 4, 0) + tok[4:])

    # imatrix: GGUF (lowbit's and llama.cpp's names) and legacy .dat
    save("imatrix", "lowbit.imatrix.gguf", imatrix_gguf())
    save("imatrix", "sums.imatrix.gguf", imatrix_gguf(legacy_names=True))
    save("imatrix", "legacy.dat", imatrix_dat())
    save("imatrix", "legacy_truncated.dat", imatrix_dat()[:30])

    # recipes
    recipe = {"format": "lowbit-recipe", "version": 1, "budget_bytes": 4096, "total_bytes": 4000,
              "estimated_kld": 0.01, "tensors": [
                  {"name": "blk.0.attn_q.weight", "type": "Q4_K", "bytes": 144, "loss": 0.001,
                   "fixed": False},
                  {"name": "blk.0.ffn_down.weight", "type": "q8_0", "bytes": 34, "loss": 0.0,
                   "fixed": False},
                  {"name": "output_norm.weight", "type": "F32", "bytes": 32, "loss": 0,
                   "fixed": True}]}
    save("recipe", "recipe.json", json.dumps(recipe, indent=1))
    save("recipe", "bad_type.json", json.dumps(
        {"format": "lowbit-recipe", "tensors": [{"name": "a", "type": "Q9_X"}]}))
    save("recipe", "not_recipe.json", '{"format": "other", "tensors": {}}')

    # logits
    save("logits", "full.logits", logits())
    save("logits", "topk.logits", logits(n_vocab=16, top_k=3))
    save("logits", "truncated.logits", logits()[:70])
    save("logits", "bad_magic.logits", b"LBLOGIT2" + logits()[8:])

    # JSON parsers: a few more beside the hand-written seeds
    save("config_json", "qwen3.json", json.dumps(
        {"model_type": "qwen3", "vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 1,
         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
         "intermediate_size": 64, "max_position_embeddings": 128, "rope_theta": 1000000,
         "rms_norm_eps": 1e-6, "tie_word_embeddings": True, "hidden_act": "silu",
         "bos_token_id": 1, "eos_token_id": [2, 3], "temperature": 0.7, "top_p": 0.9,
         "top_k": 20, "rope_scaling": {"type": "linear", "factor": 2.0}}))
    save("config_json", "mistral_truncated.json", '{"model_type": "mistral", "vocab_size": 3')


if __name__ == "__main__":
    main()
