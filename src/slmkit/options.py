"""Generation options: validated, and unknown options are errors (extra='forbid')."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from slmkit.errors import InvalidOptionsError


class GenerationOptions(BaseModel):
    """Sampling and stopping options shared by every backend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int = Field(default=256, ge=1, le=131072, description="Most tokens to generate.")
    temperature: float = Field(
        default=0.7,
        ge=0.0,
        le=5.0,
        description="0 means greedy. With no sampling option set, the model card's "
        "recommended sampling applies (slm info MODEL).",
    )
    top_p: float = Field(default=0.95, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: int = Field(default=40, ge=0, description="0 disables top-k.")
    min_p: float = Field(
        default=0.05, ge=0.0, le=1.0, description="Drop tokens below this share of the top one."
    )
    repeat_penalty: float = Field(
        default=1.0, gt=0.0, le=5.0, description="Penalty on the last 64 tokens (1: none)."
    )
    seed: int | None = Field(
        default=None, ge=0, le=2**32 - 1, description="Seeded sampling repeats exactly."
    )
    stop: tuple[str, ...] = Field(
        default=(), max_length=16, description="Stop at this text (repeatable, up to 16)."
    )
    logprobs: int | None = Field(
        default=None,
        ge=0,
        le=20,
        description="Report each token's log-probability and this many top alternatives.",
    )
    grammar: str | None = Field(
        default=None, description="GBNF grammar the output must follow (see tasks/extract.py)."
    )
    prompt_lookup: int = Field(
        default=0,
        ge=0,
        le=32,
        description="Prompt-lookup decoding: draft up to this many tokens by copying what "
        "followed the last 3 (or 2) tokens earlier in the text, verify them in one batch "
        "(0: off). Helps outputs that copy their input (extraction, summaries, edits).",
    )
    draft_max: int = Field(
        default=8,
        ge=0,
        le=32,
        description="With a draft model attached (load(..., draft=ID), --draft): draft up to "
        "this many tokens per step (adapted below it; 0: do not use the draft).",
    )
    overflow: Literal["error", "truncate"] = Field(
        default="error",
        description="When prompt + max_tokens exceed the context: raise, or drop the oldest "
        "tokens (chat: the oldest turns) and report how many.",
    )

    @property
    def repeatable(self) -> bool:
        """Seeded or greedy: the same request must give the same text, whatever ran before
        or beside it (prefills then reuse only chunk-aligned cells: engine/scheduler.py)."""
        return self.seed is not None or self.temperature == 0.0

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = (v,)
        if v is None:
            return ()
        if any(not isinstance(s, str) or s == "" for s in v):
            raise ValueError("stop strings must be non-empty strings")
        return tuple(v)


def make_options(options: GenerationOptions | None = None, **overrides: Any) -> GenerationOptions:
    """Build options from keyword arguments; InvalidOptionsError names each bad field."""
    try:
        if options is None:
            return GenerationOptions(**overrides)
        if not overrides:
            return options
        # exclude_unset: what the caller never set stays unset (model defaults may fill it)
        return GenerationOptions(**{**options.model_dump(exclude_unset=True), **overrides})
    except ValidationError as e:
        raise InvalidOptionsError(_describe(e)) from e


SAMPLING_DEFAULTS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty")


def with_defaults(options: GenerationOptions, defaults: dict[str, float]) -> GenerationOptions:
    """A model's recommended sampling, when the caller set none of the sampling fields (a
    caller who chose any of them, e.g. temperature 0 for a task, gets exactly that)."""
    if set(SAMPLING_DEFAULTS) & options.model_fields_set:
        return options
    fill = {k: v for k, v in defaults.items() if k in SAMPLING_DEFAULTS}
    if not fill:
        return options
    # model_copy does not validate: a catalog's top_k of 64 arrives as 64.0 (its defaults are
    # a dict of floats) and llama.cpp's C sampler rejects a float; validating converts it
    checked = GenerationOptions.model_validate(fill)
    return options.model_copy(update={k: getattr(checked, k) for k in fill})


def _describe(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "options"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown option {loc!r}")
        else:
            parts.append(f"{loc}: {err['msg']} (got {err.get('input')!r})")
    return "invalid options: " + "; ".join(parts)
