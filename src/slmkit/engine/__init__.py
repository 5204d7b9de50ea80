"""Continuous batching: one loaded model, many sequences, one batched decode per step."""

from slmkit.engine.batch import generate_many, score_many
from slmkit.engine.core import Engine, Handle
from slmkit.engine.scheduler import Plan, Request, Scheduler
from slmkit.errors import EngineFullError

__all__ = [
    "Engine",
    "EngineFullError",
    "Handle",
    "Plan",
    "Request",
    "Scheduler",
    "generate_many",
    "score_many",
]
