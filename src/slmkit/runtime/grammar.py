"""JSON Schema -> a llama.cpp GBNF grammar, for output that always parses (extraction, the
server's `response_format`). The schema is checked first (jsonschema), then converted by
llama-cpp-python's converter: the one llama_cpp import of the grammar path."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from slmkit.errors import SchemaError


def schema_of(schema: dict[str, Any] | type[BaseModel]) -> dict[str, Any]:
    """A JSON Schema dict from a dict or a pydantic model class, checked for validity."""
    import jsonschema

    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema.model_json_schema()
    if not isinstance(schema, dict):
        raise SchemaError("schema must be a JSON Schema object or a pydantic model class")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as e:
        raise SchemaError(f"not a valid JSON Schema: {e.message}") from e
    if schema.get("type") != "object":
        raise SchemaError('the schema\'s top level must be {"type": "object", ...}')
    return schema


def grammar_for(schema: dict[str, Any]) -> str:
    """GBNF grammar for the schema (llama-cpp-python's converter)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        return str(json_schema_to_gbnf(json.dumps(schema)))
    except Exception as e:  # the converter raises bare Exceptions for unsupported features
        raise SchemaError(f"the schema cannot be expressed as a grammar: {e}") from e
