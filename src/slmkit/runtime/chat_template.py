"""A model's Jinja chat template rendered into a prompt by llama-cpp-python's
Jinja2ChatFormatter (the renderer its own server uses), for every backend: the one llama_cpp
import of the chat path."""

from __future__ import annotations

from typing import Any


def chat_formatter(template: str, *, bos: str, eos: str) -> Any:
    """A callable: `formatter(messages=[...]).prompt` is the prompt text."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    return Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
