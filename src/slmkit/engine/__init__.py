"""Continuous batching: one loaded model, many sequences, one batched decode per step."""

from slmkit.engine.batch import generate_many
from slmkit.engine.core import Engine, EngineFullError, Handle

__all__ = ["Engine", "EngineFullError", "Handle", "generate_many"]
