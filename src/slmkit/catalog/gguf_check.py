"""Check a GGUF file's structure before any parser that trusts it (llama.cpp, gguf's
reader) sees it: magic, version, counts, every string and array length, value types,
tensor names, shapes, types and offsets, against the file's real size.

Written here because the parsers that exist allocate what the header claims (a count of
2**60 tensors, a 2**62-byte string) or crash on it; this one reads the memory-mapped
file with bounded steps and never allocates more than one item at a time.
Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

from slmkit.errors import ModelFormatError

MAGIC = b"GGUF"
VERSIONS = (2, 3)
MAX_KV = 1 << 16
MAX_TENSORS = 1 << 20
MAX_KEY = 1 << 16
MAX_STRING = 1 << 26  # 64 MiB: a chat template or a merges entry is far smaller
MAX_NAME = 64  # GGML_MAX_NAME, the longest tensor name llama.cpp accepts (with its NUL)
MAX_DIMS = 4
MAX_ELEMENTS = 1 << 48
# GGUF value types -> struct format of their scalar (8 = string, 9 = array)
SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
STRING, ARRAY = 8, 9


class _Reader:
    """Bounded little-endian reads over a memory map; every overrun is a ModelFormatError."""

    def __init__(self, buf: mmap.mmap | bytes, where: str) -> None:
        self.buf, self.pos, self.where = buf, 0, where

    def fail(self, problem: str) -> ModelFormatError:
        return ModelFormatError(f"{self.where}: not a valid GGUF file: {problem}")

    def unpack(self, fmt: str) -> int | float | bool:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.buf):
            raise self.fail(f"truncated at byte {self.pos} (file is {len(self.buf)} bytes)")
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return value

    def count(self, what: str, limit: int) -> int:
        n = int(self.unpack("Q"))
        if n > limit:
            raise self.fail(f"{what} {n} is over the limit {limit}")
        return n

    def string(self, what: str, limit: int = MAX_STRING) -> bytes:
        n = self.count(f"{what} length", limit)
        if self.pos + n > len(self.buf):
            raise self.fail(f"{what} of {n} bytes runs past the end of the file")
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return raw

    def skip_value(self, vtype: int, key: str) -> int | float | bool | bytes | None:
        if vtype in SCALARS:
            return self.unpack(SCALARS[vtype])
        if vtype == STRING:
            return self.string(f"value of {key}")
        if vtype != ARRAY:
            raise self.fail(f"key {key} has unknown value type {vtype}")
        etype = int(self.unpack("I"))
        n = self.count(f"array length of {key}", len(self.buf))
        if etype in SCALARS:
            size = struct.calcsize("<" + SCALARS[etype])
            if self.pos + n * size > len(self.buf):
                raise self.fail(f"array {key} of {n} items runs past the end of the file")
            self.pos += n * size
            return None
        if etype != STRING:
            raise self.fail(f"array {key} has element type {etype} (nested or unknown)")
        for _ in range(n):
            self.string(f"item of {key}")
        return None


def _metadata(r: _Reader, n_kv: int) -> int:
    """Walk the key/value pairs; return general.alignment (default 32)."""
    alignment, seen = 32, set()
    for _ in range(n_kv):
        key = r.string("key", MAX_KEY).decode("utf-8", "replace")
        if key in seen:
            raise r.fail(f"key {key!r} appears twice")
        seen.add(key)
        vtype = int(r.unpack("I"))
        value = r.skip_value(vtype, key)
        if key == "general.alignment":
            if not isinstance(value, int) or value <= 0 or value & (value - 1):
                raise r.fail(f"general.alignment {value!r} is not a power of two")
            alignment = value
    return alignment


def _tensors(r: _Reader, n_tensors: int, alignment: int) -> list[tuple[str, int, int]]:
    """Walk the tensor table; return (name, offset, bytes) per tensor."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    out, names = [], set()
    for _ in range(n_tensors):
        name = r.string("tensor name", MAX_NAME - 1).decode("utf-8", "replace")
        if name in names:
            raise r.fail(f"tensor name {name!r} appears twice")
        names.add(name)
        n_dims = int(r.unpack("I"))
        if not 1 <= n_dims <= MAX_DIMS:
            raise r.fail(f"tensor {name} has {n_dims} dimensions (1 to {MAX_DIMS})")
        dims = [int(r.unpack("Q")) for _ in range(n_dims)]
        ttype, offset = int(r.unpack("I")), int(r.unpack("Q"))
        n = 1
        for d in dims:
            n *= d
        if not dims or min(dims) < 1 or n > MAX_ELEMENTS:
            raise r.fail(f"tensor {name} has an impossible shape {dims}")
        try:
            block, size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
        except (ValueError, KeyError):
            raise r.fail(f"tensor {name} has unknown type {ttype}") from None
        if dims[0] % block or offset % alignment:
            raise r.fail(f"tensor {name}: shape {dims} or offset {offset} breaks alignment")
        out.append((name, offset, n // block * size))
    return out


def check_gguf(path: Path) -> None:
    """Raise ModelFormatError (one line naming the problem) unless the file is a
    structurally sound GGUF whose tensors all lie inside it."""
    try:
        with path.open("rb") as f:
            size = path.stat().st_size
            if size < 24:
                raise ModelFormatError(f"{path}: not a valid GGUF file: only {size} bytes")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                _check(_Reader(buf, str(path)), size)
    except OSError as e:
        raise ModelFormatError(f"cannot read {path}: {e.strerror or e}") from e


def _check(r: _Reader, size: int) -> None:
    magic = bytes(r.buf[:4])
    if magic != MAGIC:
        raise r.fail(f"magic {magic!r}, expected b'GGUF'")
    r.pos = 4
    version = int(r.unpack("I"))
    if version not in VERSIONS:
        raise r.fail(f"version {version} (supported: {', '.join(map(str, VERSIONS))})")
    n_tensors = r.count("tensor count", MAX_TENSORS)
    n_kv = r.count("metadata count", MAX_KV)
    alignment = _metadata(r, n_kv)
    tensors = _tensors(r, n_tensors, alignment)
    data = -(-r.pos // alignment) * alignment
    for name, offset, nbytes in tensors:
        if data + offset + nbytes > size:
            raise r.fail(
                f"tensor {name} ({nbytes} bytes at data offset {offset}) runs past the end "
                f"of the file ({size} bytes): truncated?"
            )
