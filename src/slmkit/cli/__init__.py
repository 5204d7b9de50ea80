"""The `slm` command line: one click group; each command module registers its commands on
import, grouped as users think of them."""

from slmkit.cli import (
    bench,
    data,
    doctor,
    evaluate,
    generate,
    kb,
    models,
    optimize,
    scale,
    serve,
    tasks,
    train,
)
from slmkit.cli.base import cli

__all__ = [
    "bench",
    "cli",
    "data",
    "doctor",
    "evaluate",
    "generate",
    "kb",
    "main",
    "models",
    "optimize",
    "scale",
    "serve",
    "tasks",
    "train",
]


def main() -> None:
    """Entry point for the `slm` script."""
    cli()
