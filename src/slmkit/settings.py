"""Process-wide settings, read from SLMKIT_* environment variables (pydantic-settings)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_threads() -> int:
    # llama-cpp-python defaults to half the cores; on a 2-core box that halves decode speed.
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


class Settings(BaseSettings):
    """Settings for the store and the runtime. Every field maps to SLMKIT_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="SLMKIT_", extra="forbid")

    home: Path | None = Field(
        default=None, description="Store directory; default is the platform data dir."
    )
    n_threads: int = Field(default_factory=_default_threads, ge=1)
    n_ctx: int = Field(
        default=4096, ge=64, description="Context window used when a model is loaded."
    )
    pip_args: str = Field(
        default="", description="Extra arguments for `pip download` (e.g. --find-links DIR)."
    )
    hf_timeout_s: float = Field(
        default=5.0, gt=0, description="Hugging Face (and dataset download) connect timeout."
    )
    data_base_url: str = Field(
        default="https://raw.githubusercontent.com",
        description="Where `slm data pull` fetches upstream dataset files (REPO/COMMIT/PATH).",
    )

    def store_dir(self) -> Path:
        """Return the store root: $SLMKIT_HOME, else the platform's user data dir."""
        if self.home is not None:
            return self.home.expanduser()
        from platformdirs import user_data_dir

        return Path(user_data_dir("slmkit", appauthor=False))


class ServerSettings(BaseSettings):
    """`slm serve` settings. Every field maps to SLMKIT_SERVE_<NAME> and to a flag of
    `slm serve` (generated from these fields, so the two cannot disagree); a flag given on
    the command line wins over the environment."""

    model_config = SettingsConfigDict(env_prefix="SLMKIT_SERVE_", extra="forbid")

    host: str = Field(default="127.0.0.1", description="Bind address (loopback by default).")
    port: int = Field(default=8000, ge=0, le=65535, description="Port to listen on.")
    models: tuple[str, ...] = Field(
        default=(),
        description="Serve only these ids (default: all installed).",
        json_schema_extra={"flag": "model"},
    )
    api_keys: tuple[str, ...] = Field(
        default=(),
        description="Require `Authorization: Bearer KEY`.",
        json_schema_extra={"flag": "api-key"},
    )
    keys_file: Path | None = Field(default=None, description="File with one API key per line.")
    parallel: int = Field(
        default=16, ge=1, le=64, description="Sequences decoded together per model."
    )
    n_ctx: int = Field(
        default=16384,
        ge=512,
        description="Cache cells of each model's batch: n_ctx / parallel per sequence with "
        "--kv-layout per-seq, all shared with shared.",
    )
    kv_layout: Literal["per-seq", "shared"] = Field(
        default="per-seq",
        description="per-seq: each sequence its own cells and attention over them only "
        "(faster with many streams; longer requests, up to the model's context, run one at "
        "a time); shared: one pool any request may fill.",
    )
    max_waiting: int = Field(
        default=64, ge=0, description="Queued requests beyond the running ones; more get 429."
    )
    keep_alive: float = Field(
        default=300.0, ge=0, description="Seconds an idle model stays loaded."
    )
    memory_budget_mb: int | None = Field(
        default=None,
        ge=64,
        description="Unload least recently used idle models to keep estimated RAM under this.",
    )
    max_body_bytes: int = Field(default=1_000_000, ge=1024, description="Largest request body.")
    default_max_tokens: int = Field(
        default=256, ge=1, description="max_tokens when a request gives none."
    )
    max_tokens_limit: int | None = Field(
        default=None, ge=1, description="Largest max_tokens a request may ask for (400 above)."
    )
    key_requests_per_minute: int | None = Field(
        default=None, ge=1, description="Requests per minute per API key (429 above)."
    )
    key_concurrent: int | None = Field(
        default=None, ge=1, description="Requests in flight (streams included) per API key."
    )
    send_timeout: float = Field(
        default=30.0,
        ge=0,
        description="Cancel a stream whose client has read nothing for this many seconds "
        "(0: never).",
    )
    prompt_lookup: int = Field(
        default=0,
        ge=0,
        le=32,
        description="Prompt-lookup drafts of up to this many tokens for requests that give no "
        "prompt_lookup (0: off); used only while a request is alone in the batch.",
    )
    draft: str | None = Field(
        default=None,
        description="Draft model for speculative decoding: 'auto' (each served model's first "
        "installed compatible draft, if any) or a model id; used while a request is alone in "
        "the batch and the cost model says it pays.",
    )
    deterministic_greedy: bool = Field(
        default=False,
        description="Run greedy requests in their own context like seeded ones, one at a "
        "time, so their text never depends on other traffic (costs their batching).",
    )
    log_prompts: bool = Field(
        default=False, description="Log prompts and texts, personal data redacted (off by default)."
    )

    def all_keys(self) -> tuple[str, ...]:
        """--api-key values plus the keys in --keys-file."""
        if self.keys_file is None:
            return self.api_keys
        try:
            lines = self.keys_file.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            from slmkit.errors import InputError

            raise InputError(f"cannot read {self.keys_file}: {e.strerror}") from e
        return self.api_keys + tuple(k.strip() for k in lines if k.strip())
