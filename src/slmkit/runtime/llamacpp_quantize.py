"""GGUF quantization through llama.cpp's own `llama_model_quantize` (the code behind its
`llama-quantize` tool), called through llama-cpp-python's bindings."""

from __future__ import annotations

import ctypes
from pathlib import Path

from slmkit.errors import InvalidOptionsError, RuntimeFailure

# Output types offered (the llama.cpp LLAMA_FTYPE_MOSTLY_* names, lower-cased).
GGUF_TYPES = (
    "f16",
    "q8_0",
    "q6_k",
    "q5_k_m",
    "q5_k_s",
    "q5_0",
    "q4_k_m",
    "q4_k_s",
    "q4_0",
    "iq4_nl",
)
# Tensor types that may be set for the token embeddings and the output layer alone.
TENSOR_TYPES = ("f16", "q8_0", "q6_k", "q4_0", "iq4_nl")
FLOAT_SOURCES = ("F32", "ALL_F32", "F16", "BF16")


def ftype(name: str) -> int:
    import llama_cpp

    value = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{name.upper()}", None)
    if name not in GGUF_TYPES or value is None:
        raise InvalidOptionsError(
            f"GGUF cannot be quantized to {name!r}; choose one of {', '.join(GGUF_TYPES)}"
        )
    return int(value)


def tensor_type(name: str) -> int:
    import llama_cpp

    value = getattr(llama_cpp, f"GGML_TYPE_{name.upper()}", None)
    if name not in TENSOR_TYPES or value is None:
        raise InvalidOptionsError(
            f"no tensor type {name!r}; choose one of {', '.join(TENSOR_TYPES)}"
        )
    return int(value)


def quantize_gguf(
    src: Path,
    dst: Path,
    qtype: str,
    *,
    n_threads: int,
    allow_requantize: bool = False,
    embeddings: str | None = None,
    output: str | None = None,
) -> None:
    """Write `dst` as `src` quantized to `qtype` (with `embeddings` / `output` as the token
    embedding and output tensors' own types, where given); RuntimeFailure if llama.cpp
    refuses."""
    import llama_cpp

    from slmkit.runtime.llamacpp import quiet_llama_logs

    quiet_llama_logs(llama_cpp)
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = n_threads
    params.ftype = ftype(qtype)
    params.allow_requantize = allow_requantize
    if embeddings:
        params.token_embedding_type = tensor_type(embeddings)
    if output:
        params.output_tensor_type = tensor_type(output)
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0 or not dst.is_file():
        raise RuntimeFailure(f"llama.cpp could not quantize {src.name} to {qtype} (code {rc})")
