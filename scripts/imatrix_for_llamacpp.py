#!/usr/bin/env python3
"""Writes a lowbit (or llama.cpp) GGUF imatrix as the importance list that
build/tests/llamacpp_native's quantize-model reads: one line per weight,
"NAME COLS V1 .. V_COLS" with V = in_sum2 / count, the importance llama.cpp's own
quantize tool derives from the same file.

Usage: scripts/imatrix_for_llamacpp.py IMATRIX.gguf OUT.txt
(IMATRIX.gguf from `lowbit calibrate MODEL --calib TEXT -o IMATRIX.gguf`.)
Standard library only: the GGUF header, key-value pairs and F32 tensors are read by hand.
"""
import struct
import sys

# GGUF value types -> struct codes (8 = string and 9 = array are read apart).
SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


class Reader:
    def __init__(self, data):
        self.data, self.at = data, 0

    def take(self, fmt):
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values

    def string(self):
        (n,) = self.take("Q")
        self.at += n
        return self.data[self.at - n : self.at].decode()

    def value(self, kind):
        if kind == 8:
            return self.string()
        if kind == 9:
            item, n = self.take("IQ")
            return [self.value(item) for _ in range(n)]
        return self.take(SCALARS[kind])[0]


def read_tensors(path):
    with open(path, "rb") as f:
        r = Reader(f.read())
    magic, _, n_tensors, n_keys = r.take("4sIQQ")
    if magic != b"GGUF":
        sys.exit(f"{path}: not a GGUF file")
    alignment = 32
    for _ in range(n_keys):
        key = r.string()
        (kind,) = r.take("I")
        value = r.value(kind)
        if key == "general.alignment":
            alignment = value
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        (n_dims,) = r.take("I")
        dims = r.take("Q" * n_dims)
        kind, offset = r.take("IQ")
        infos.append((name, dims, kind, offset))
    base = (r.at + alignment - 1) // alignment * alignment
    tensors = {}
    for name, dims, kind, offset in infos:
        if kind != 0:
            sys.exit(f"{path}: tensor '{name}' is not F32")
        count = 1
        for d in dims:
            count *= d
        tensors[name] = struct.unpack_from(f"<{count}f", r.data, base + offset)
    return tensors


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    tensors = read_tensors(sys.argv[1])
    suffix = ".in_sum2"
    with open(sys.argv[2], "w") as out:
        for name, sums in tensors.items():
            if not name.endswith(suffix):
                continue
            weight = name[: -len(suffix)]
            counts = tensors.get(weight + ".counts")
            if not counts or counts[0] <= 0:
                sys.exit(f"{sys.argv[1]}: '{weight}.counts' is missing or not positive")
            values = " ".join(f"{s / counts[0]:.8g}" for s in sums)
            out.write(f"{weight} {len(sums)} {values}\n")


if __name__ == "__main__":
    main()
