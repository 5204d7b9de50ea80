"""Structured extraction: output constrained by a JSON Schema through a llama.cpp grammar,
so it always parses; then validated against the schema (and the pydantic model, if any)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from slmkit.errors import EmptyPromptError, ExtractionError, SchemaError
from slmkit.model import Model
from slmkit.runtime.grammar import grammar_for, schema_of

__all__ = [
    "Extraction",
    "Extractor",
    "SchemaError",
    "extract",
    "extraction_prompt",
    "grammar_for",
    "schema_of",
]


@dataclass(frozen=True)
class Extraction:
    data: dict[str, Any]
    raw: str
    completion_tokens: int


DEFAULT_INSTRUCTION = "Extract the fields described by the JSON schema from the text."


def extraction_prompt(instruction: str, schema: dict[str, Any], text: str) -> str:
    """The user message an extraction sends (fine-tuning for extraction trains on the same)."""
    return f"{instruction}\nSchema: {json.dumps(schema)}\n\nText: {text}\n\nAnswer with JSON only."


class Extractor:
    """Reusable extractor: the schema is checked and compiled once."""

    def __init__(
        self,
        model: Model,
        schema: dict[str, Any] | type[BaseModel],
        *,
        instruction: str = DEFAULT_INSTRUCTION,
        max_tokens: int = 384,
        prompt_lookup: int = 0,
    ) -> None:
        self.model = model
        self.prompt_lookup = prompt_lookup  # drafts copied from the text (GenerationOptions)
        self.pydantic = schema if isinstance(schema, type) else None
        self.schema = schema_of(schema)
        self.grammar = grammar_for(self.schema)
        self.instruction = instruction
        self.max_tokens = max_tokens

    def __call__(self, text: str) -> Extraction:
        import jsonschema

        if not text.strip():
            raise EmptyPromptError("the text is empty")
        prompt = extraction_prompt(self.instruction, self.schema, text)
        out = self.model.chat(
            prompt,
            temperature=0,
            max_tokens=self.max_tokens,
            grammar=self.grammar,
            overflow="error",
            prompt_lookup=self.prompt_lookup,
        )
        try:
            data = json.loads(out.text)
        except json.JSONDecodeError as e:
            raise ExtractionError(
                f"output stopped before the JSON was complete ({out.finish_reason}, "
                f"{out.stats.completion_tokens} tokens); raise max_tokens"
            ) from e
        jsonschema.validate(data, self.schema)
        if self.pydantic is not None:
            try:
                data = self.pydantic.model_validate(data).model_dump(mode="json")
            except ValidationError as e:
                raise ExtractionError(f"output failed model validation: {e}") from e
        return Extraction(data, out.text, out.stats.completion_tokens)


def extract(model: Model, text: str, schema: dict[str, Any] | type[BaseModel]) -> dict[str, Any]:
    """Extract one object matching `schema` from `text`."""
    return Extractor(model, schema)(text).data
