"""Request bodies of the OpenAI-compatible API. Unknown fields are 400s (extra='forbid')."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Message(_Body):
    role: Literal["system", "user", "assistant"]
    content: str
    name: str | None = None


class StreamOptions(_Body):
    include_usage: bool = False


class JsonSchemaSpec(_Body):
    name: str = "response"
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None
    description: str | None = None


class ResponseFormat(_Body):
    type: Literal["text", "json_schema", "json_object"]
    json_schema: JsonSchemaSpec | None = None


class _Sampling(_Body):
    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=8)
    stop: str | list[str] | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=32768)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    user: str | None = None
    frequency_penalty: float = Field(default=0.0, ge=0.0, le=0.0)  # accepted only as 0
    presence_penalty: float = Field(default=0.0, ge=0.0, le=0.0)
    # slmkit's own: draft up to this many tokens copied from the text (default: the server's
    # --prompt-lookup); used while the request is alone in the batch
    prompt_lookup: int | None = Field(default=None, ge=0, le=32)
    # with `slm serve --draft`: most tokens the draft model drafts per step (0: not at all)
    draft_max: int | None = Field(default=None, ge=0, le=32)


KB_NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=32768)
    response_format: ResponseFormat | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    # slmkit's own: answer the last user message from this knowledge base (`slm kb`), with
    # numbered excerpts, citations returned under "kb", and a refusal when retrieval finds
    # nothing close (serve/grounding.py)
    kb: str | None = Field(default=None, pattern=KB_NAME)
    kb_k: int = Field(default=4, ge=1, le=20)
    kb_rerank: bool = False  # the model re-ranks 3 x kb_k excerpts by its log-likelihood
    kb_widen: int = Field(default=0, ge=0, le=5)  # neighbouring chunks shown around each


class KbQueryRequest(_Body):
    query: str = Field(min_length=1, max_length=4000)
    k: int = Field(default=5, ge=1, le=50)


MAX_PROMPTS = 64


class CompletionRequest(_Sampling):
    """A text completion. `prompt` is a string, token ids, or a list of either (one choice
    per prompt, each `n` times); `echo` puts the prompt before the generated text and, with
    `logprobs`, scores the prompt's tokens too (what lm-evaluation-harness sends)."""

    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool = False

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, v: Any) -> Any:
        items = [v] if isinstance(v, str) or (v and isinstance(v[0], int)) else v
        if not items or len(items) > MAX_PROMPTS:
            raise ValueError(f"prompt must hold 1 to {MAX_PROMPTS} prompts")
        if any(len(p) == 0 for p in items):
            raise ValueError("a prompt is empty")
        if any(isinstance(p, list) and min(p) < 0 for p in items):
            raise ValueError("token ids are non-negative")
        return v

    def prompts(self) -> list[str | list[int]]:
        p = self.prompt
        if isinstance(p, str) or isinstance(p[0], int):
            return [p]
        return list(p)


class TokenizeRequest(_Body):
    """vLLM's /tokenize (lm-evaluation-harness's remote tokenizer uses it)."""

    prompt: str
    add_special_tokens: bool = True
    model: str | None = None


class DetokenizeRequest(_Body):
    tokens: list[int]
    model: str | None = None


class EmbeddingRequest(_Body):
    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None


class ClassifyRequest(_Body):
    """Classification of one text or many: zero-shot into the given labels on a language
    model, or by a fine-tuned classifier (labels optional; if given, they must be its own)."""

    model: str
    input: str | list[str]
    labels: list[str] | None = Field(default=None, min_length=2, max_length=100)
    instruction: str = Field(default="Classify the text.", min_length=1, max_length=2000)
    calibrate: bool = True


class RedactRequest(_Body):
    """Personal data found and replaced by [KIND] (slmkit.tasks.redact); person names need
    `model` (a chat model that lists them)."""

    input: str | list[str]
    kinds: list[Literal["email", "phone", "card", "iban", "ip", "person"]] = Field(
        default=["email", "phone", "card", "iban", "ip"], min_length=1
    )
    region: str = Field(default="US", pattern=r"^[A-Z]{2}$", description="For phone numbers.")
    model: str | None = None


class SummarizeRequest(_Body):
    """Summary of one document of any length: the model's (map-reduce past its context), or
    extractive (sentences of the document itself; no model)."""

    model: str | None = None
    input: str = Field(min_length=1)
    max_words: int = Field(default=60, ge=5, le=1000)
    method: Literal["model", "extractive", "hybrid"] = "model"

    @model_validator(mode="after")
    def _model_for_model(self) -> SummarizeRequest:
        if self.method != "extractive" and not self.model:
            raise ValueError("model is required unless method is 'extractive'")
        return self
