"""Hostile GGUF files: each rejected by slmkit's own bounded reader with one clear error,
before llama.cpp or gguf's reader sees it; no crash, no allocation of what the header claims."""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner

import slmkit
from slmkit.catalog.gguf_check import check_gguf
from slmkit.errors import ModelFormatError


def s(x: bytes) -> bytes:
    return struct.pack("<Q", len(x)) + x


def kv_str(key: bytes, value: bytes) -> bytes:
    return s(key) + struct.pack("<I", 8) + s(value)


def kv_u32(key: bytes, value: int) -> bytes:
    return s(key) + struct.pack("<II", 4, value)


def tensor(name: bytes, dims: list[int], ttype: int = 0, offset: int = 0) -> bytes:
    shape = b"".join(struct.pack("<Q", d) for d in dims)
    return s(name) + struct.pack("<I", len(dims)) + shape + struct.pack("<IQ", ttype, offset)


ARCH = kv_str(b"general.architecture", b"llama")


def gguf(
    kvs: list[bytes] | None = None,
    tensors: list[bytes] | None = None,
    data: bytes = b"\0" * 128,
    *,
    version: int = 3,
    n_tensors: int | None = None,
    n_kv: int | None = None,
    magic: bytes = b"GGUF",
) -> bytes:
    kvs = [ARCH] if kvs is None else kvs
    tensors = [tensor(b"a", [32])] if tensors is None else tensors
    nt = len(tensors) if n_tensors is None else n_tensors
    nk = len(kvs) if n_kv is None else n_kv
    body = magic + struct.pack("<IQQ", version, nt, nk) + b"".join(kvs) + b"".join(tensors)
    return body + b"\0" * (-len(body) % 32) + data


HOSTILE = {
    "empty": (b"", "only 0 bytes"),
    "wrong magic": (gguf(magic=b"GGML"), "magic b'GGML'"),
    "version 1": (gguf(version=1), "version 1"),
    "version 99": (gguf(version=99), "version 99"),
    "absurd tensor count": (gguf(n_tensors=2**60), "tensor count 1152921504606846976"),
    "absurd metadata count": (gguf(n_kv=2**40), "metadata count"),
    "huge key": (gguf([struct.pack("<Q", 2**62) + b"k"]), "key length 4611686018427387904"),
    "string past the end": (
        gguf([s(b"general.name") + struct.pack("<IQ", 8, 10**7) + b"x"]),
        "runs past the end",
    ),
    "unknown value type": (gguf([s(b"k") + struct.pack("<I", 77)]), "unknown value type 77"),
    "absurd array": (
        gguf([s(b"k") + struct.pack("<IIQ", 9, 4, 2**40)]),
        "array length of k",
    ),
    "nested array": (gguf([s(b"k") + struct.pack("<IIQ", 9, 9, 1)]), "nested or unknown"),
    "duplicate key": (gguf([ARCH, ARCH]), "key 'general.architecture' appears twice"),
    "bad alignment": (gguf([ARCH, kv_u32(b"general.alignment", 3)]), "not a power of two"),
    "tensor past the end": (gguf(tensors=[tensor(b"a", [32], offset=2**20)]), "runs past the end"),
    "tensor data cut": (gguf(data=b"\0" * 64), "truncated?"),
    "duplicate tensor": (
        gguf(tensors=[tensor(b"a", [32]), tensor(b"a", [32], offset=128)]),
        "twice",
    ),
    "too many dimensions": (gguf(tensors=[tensor(b"a", [1] * 9)]), "9 dimensions"),
    "zero dimension": (gguf(tensors=[tensor(b"a", [32, 0])]), "impossible shape"),
    "unknown tensor type": (gguf(tensors=[tensor(b"a", [32], ttype=999)]), "unknown type 999"),
    "misaligned offset": (gguf(tensors=[tensor(b"a", [32], offset=3)]), "alignment"),
    "long tensor name": (gguf(tensors=[tensor(b"x" * 100, [32])]), "tensor name length 100"),
    "header cut short": (gguf()[:30], "truncated at byte"),
}


def test_a_sound_file_passes(tmp_path: Path) -> None:
    path = tmp_path / "ok.gguf"
    path.write_bytes(
        gguf(tensors=[tensor(b"a", [32]), tensor(b"b", [8, 4], offset=128)], data=b"\0" * 256)
    )
    check_gguf(path)


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_file_is_rejected_in_bounded_memory(tmp_path: Path, kind: str) -> None:
    raw, match = HOSTILE[kind]
    path = tmp_path / "bad.gguf"
    path.write_bytes(raw)
    tracemalloc.start()
    try:
        with pytest.raises(ModelFormatError, match=match) as err:
            check_gguf(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20, f"{kind}: {peak} bytes allocated"
    assert "\n" not in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("kind", ["absurd tensor count", "tensor data cut", "huge key"])
def test_load_and_cli_refuse_before_llama_cpp(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(HOSTILE[kind][0])
    with pytest.raises(ModelFormatError, match="not a valid GGUF file"):
        slmkit.load(path)
    from slmkit.cli import cli

    for args in (["run", str(path), "hi"], ["import", str(path)]):
        r = CliRunner().invoke(cli, args, env={"SLMKIT_HOME": str(tmp_path / "store")})
        assert r.exit_code == 1 and r.output.startswith("error: ") and r.output.count("\n") == 1
