"""Process-wide settings, read from SLMKIT_* environment variables (pydantic-settings)."""

from __future__ import annotations

import os
from pathlib import Path

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
    hf_timeout_s: float = Field(default=5.0, gt=0, description="Hugging Face connect timeout.")

    def store_dir(self) -> Path:
        """Return the store root: $SLMKIT_HOME, else the platform's user data dir."""
        if self.home is not None:
            return self.home.expanduser()
        from platformdirs import user_data_dir

        return Path(user_data_dir("slmkit", appauthor=False))
