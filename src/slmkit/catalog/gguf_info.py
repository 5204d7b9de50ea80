"""Read what a GGUF file says about itself, with the `gguf` package."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.errors import ModelFormatError

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class GGUFInfo:
    """Metadata read from a GGUF header. Sizes are counts, not bytes, unless named so."""

    architecture: str
    name: str | None
    params: int
    context_length: int | None
    n_layer: int | None
    n_head_kv: int | None
    head_dim: int | None
    n_embd: int | None
    chat_template: str | None
    quantization: str
    license: str | None


def check_magic(path: Path) -> None:
    """Raise ModelFormatError unless the file starts with the GGUF magic bytes."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as e:
        raise ModelFormatError(f"cannot read {path}: {e.strerror}") from e
    if head != GGUF_MAGIC:
        raise ModelFormatError(f"{path} is not a GGUF file (magic {head!r}, expected b'GGUF')")


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return None
    try:
        return field.contents()
    except Exception:  # malformed value types: treat as absent
        return None


def read_gguf_info(path: Path) -> GGUFInfo:
    """Parse the header and tensor table; raise ModelFormatError on a corrupt or truncated file."""
    import gguf

    from slmkit.catalog.gguf_check import check_gguf

    check_gguf(path)  # bounded structural check before gguf's reader trusts the header
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as e:  # gguf raises ValueError/IndexError/numpy errors on damage
        raise ModelFormatError(f"{path} is a damaged or truncated GGUF file: {e}") from e
    arch = _field(reader, "general.architecture") or "unknown"
    expected_end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    if expected_end > path.stat().st_size:
        raise ModelFormatError(
            f"{path} is truncated: tensors end at byte {expected_end}, "
            f"file has {path.stat().st_size}"
        )
    n_head = _field(reader, f"{arch}.attention.head_count")
    n_embd = _field(reader, f"{arch}.embedding_length")
    head_dim = _field(reader, f"{arch}.attention.key_length")
    if head_dim is None and n_head and n_embd:
        head_dim = int(n_embd) // int(n_head)
    file_type = _field(reader, "general.file_type")
    return GGUFInfo(
        architecture=str(arch),
        name=_field(reader, "general.name"),
        params=sum(int(t.n_elements) for t in reader.tensors),
        context_length=_field(reader, f"{arch}.context_length"),
        n_layer=_field(reader, f"{arch}.block_count"),
        n_head_kv=_field(reader, f"{arch}.attention.head_count_kv") or n_head,
        head_dim=head_dim,
        n_embd=n_embd,
        chat_template=_field(reader, "tokenizer.chat_template"),
        quantization=_quant_name(file_type),
        license=_field(reader, "general.license"),
    )


def _quant_name(file_type: int | None) -> str:
    import gguf

    if file_type is None:
        return "unknown"
    try:
        return gguf.LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
    except ValueError:
        return f"file_type_{file_type}"
