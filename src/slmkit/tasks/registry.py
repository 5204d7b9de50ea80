"""The one list of tasks. The CLI (a generated `slm NAME` for a task without its own command),
`slm batch`, `slm deploy kuberay --task`, the server (a generated `POST /v1/tasks/NAME` for a
task without its own route), `slm eval` (which task a user's labelled file is) and `slm bench`
(a task's headline score) all read it.

Adding a task is one `register(TaskSpec(...))` plus the module that does the work: its options
are a pydantic model (they become the command's flags and the route's request fields), its
`build` turns validated options into a batch function from texts to one JSON-ready dict each.
docs/design.md walks through it; tests/test_registry_fake.py follows that walkthrough.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from slmkit.errors import InputError
from slmkit.tasks.factory import (
    ClassifyOptions,
    EmbedOptions,
    ExtractOptions,
    RedactOptions,
    SummarizeOptions,
    TaskFn,
    TaskOptions,
    classify_task,
    embed_task,
    extract_task,
    redact_task,
    summarize_task,
)

__all__ = [
    "TaskFn",
    "TaskOptions",
    "TaskSpec",
    "all_tasks",
    "for_rows",
    "get",
    "make_task",
    "names",
    "register",
    "unregister",
]


@dataclass(frozen=True)
class TaskSpec:
    """A task as every front end sees it."""

    name: str
    summary: str  # one line: `slm --help`, the route's OpenAPI summary
    options: type[TaskOptions]  # flags, request fields and `slm batch -o KEY=VALUE`
    output: Mapping[str, str]  # each result's fields and what they hold
    build: Callable[[Any], TaskFn]  # validated options -> texts -> results (loads once)
    route: str | None = None  # the server's own route; None: POST /v1/tasks/NAME
    command: str | None = None  # the hand-written command; None: a generated `slm NAME`
    rows: tuple[str, ...] = ()  # the fields of a labelled file `slm eval FILE` scores as this
    score: str | None = None  # the headline figure `slm eval`/`slm bench` report for it

    def parse(self, options: Mapping[str, Any]) -> TaskOptions:
        """The options validated by the task's model: one InputError naming the bad ones."""
        try:
            return self.options.model_validate(dict(options))
        except ValidationError as e:
            bad = "; ".join(
                f"{'.'.join(map(str, err['loc'])) or 'options'}: {err['msg']}" for err in e.errors()
            )
            known = ", ".join(self.options.model_fields)
            raise InputError(f"{self.name}: {bad} (its options: {known})") from None

    def make(self, options: Mapping[str, Any]) -> TaskFn:
        return self.build(self.parse(options))


_TASKS: dict[str, TaskSpec] = {}


def register(spec: TaskSpec, *, replace: bool = False) -> TaskSpec:
    """Add a task; a second task of the same name is an error unless `replace`."""
    if not spec.name.isidentifier() or spec.name != spec.name.lower():
        raise InputError(f"task names are lower-case identifiers, not {spec.name!r}")
    if spec.name in _TASKS and not replace:
        raise InputError(f"a task named {spec.name!r} is already registered")
    _TASKS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    _TASKS.pop(name, None)


def names() -> tuple[str, ...]:
    return tuple(_TASKS)


def all_tasks() -> list[TaskSpec]:
    return list(_TASKS.values())


def get(name: str) -> TaskSpec:
    """The task called `name`; InputError with the nearest names otherwise."""
    if name in _TASKS:
        return _TASKS[name]
    near = difflib.get_close_matches(name, _TASKS, n=1)
    hint = f" (did you mean {near[0]}?)" if near else ""
    raise InputError(f"unknown task {name!r}{hint}; one of {', '.join(_TASKS)}")


def for_rows(fields: Iterable[str]) -> TaskSpec | None:
    """The task whose labelled rows have these fields (`slm eval FILE`), or None."""
    have = set(fields)
    return next((t for t in _TASKS.values() if t.rows and set(t.rows) <= have), None)


def make_task(task: str, options: Mapping[str, Any]) -> TaskFn:
    """The task as a batch function (the code `slm batch`, Ray workers and the generated
    routes share, so every path gives the same results); loads its model once."""
    return get(task).make(options)


register(
    TaskSpec(
        "classify",
        "Label texts: zero-/few-shot with a chat model, a trained head, or a fine-tuned model.",
        ClassifyOptions,
        {"label": "the chosen label", "probs": "label -> probability"},
        classify_task,
        route="/v1/classify",
        command="classify",
        rows=("text", "label_text"),
        score="accuracy",
    )
)
register(
    TaskSpec(
        "summarize",
        "Summarize documents of any length (map-reduce over chunks past the context).",
        SummarizeOptions,
        {"summary": "the summary", "coverage": "share of the document read", "chunks": "count"},
        summarize_task,
        route="/v1/summarize",
        command="summarize",
        rows=("document", "summary"),
        score="rougeL",
    )
)
register(
    TaskSpec(
        "extract",
        "Fill a JSON Schema from each text (grammar-constrained decoding).",
        ExtractOptions,
        {"data": "the object, valid against the schema"},
        extract_task,
        route="/v1/chat/completions",  # response_format: json_schema
        command="extract",
        score="field_accuracy",
    )
)
register(
    TaskSpec(
        "embed",
        "Embed texts as L2-normalised vectors (MiniLM by default).",
        EmbedOptions,
        {"embedding": "the vector"},
        embed_task,
        route="/v1/embeddings",
        command="embed",
    )
)
register(
    TaskSpec(
        "redact",
        "Replace personal data (emails, phones, cards, IBANs, IPs, names) by placeholders.",
        RedactOptions,
        {"text": "the redacted text", "entities": "[{kind, start, end}] in the original"},
        redact_task,
        route="/v1/redact",
        command="redact",
    )
)
