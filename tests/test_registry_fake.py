"""The new-task walkthrough of docs/design.md ("Adding a task"), followed step by step: a toy
task registered with one `register(TaskSpec(...))` shows up in `slm --help`, runs as
`slm NAME`, as `slm batch NAME` (its options by -o KEY=VALUE), and as `POST /v1/tasks/NAME`
in the server's OpenAPI. Redact, a built-in registered the same way, runs under `slm batch`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from pydantic import Field

from slmkit.catalog.store import Store
from slmkit.cli import cli
from slmkit.errors import InputError
from slmkit.serve import ModelProvider, ServerSettings, create_app
from slmkit.tasks import registry
from slmkit.tasks.registry import TaskOptions, TaskSpec


# Step 1 of the walkthrough: the task's options, as a pydantic model.
class ShoutOptions(TaskOptions):
    marks: int = Field(1, ge=0, le=5, description="How many ! to add.")


# Step 2: the module's work, built once from validated options.
def build_shout(o: ShoutOptions) -> registry.TaskFn:
    def run(texts: list[str]) -> list[dict[str, Any]]:
        return [{"shout": t.upper() + "!" * o.marks} for t in texts]

    return run


@pytest.fixture
def shout() -> Iterator[TaskSpec]:
    # Step 3: one entry in the registry.
    spec = registry.register(
        TaskSpec(
            "shout",
            "Upper-case each text and add exclamation marks.",
            ShoutOptions,
            {"shout": "the text, shouted"},
            build_shout,
        )
    )
    yield spec
    registry.unregister("shout")


def test_a_registered_task_appears_in_the_cli(shout: TaskSpec) -> None:
    runner = CliRunner()
    help_ = runner.invoke(cli, ["--help"])
    assert help_.exit_code == 0
    line = next(ln for ln in help_.output.splitlines() if ln.strip().startswith("shout"))
    assert "Upper-case each text" in line
    own = runner.invoke(cli, ["shout", "--help"])
    assert "--marks" in own.output and "How many ! to add." in own.output
    res = runner.invoke(cli, ["shout", "hello", "hi there", "--marks", "2"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in res.output.splitlines()]
    assert rows == [
        {"text": "hello", "shout": "HELLO!!"},
        {"text": "hi there", "shout": "HI THERE!!"},
    ]
    bad = runner.invoke(cli, ["shout", "x", "--marks", "9"])
    assert bad.exit_code != 0 and "marks" in bad.output and "Traceback" not in bad.output
    assert "shout" not in runner.invoke(cli, ["--help"]).output.split("Commands:")[0]


def test_a_registered_task_runs_under_slm_batch(shout: TaskSpec, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate("ab")))
    out = tmp_path / "out.jsonl"
    runner = CliRunner()
    helped = runner.invoke(cli, ["batch", "--help"])
    assert "shout" in helped.output
    res = runner.invoke(cli, ["batch", "shout", str(src), str(out), "-o", "marks=3", "--json"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert rows == [{"id": 0, "shout": "A!!!"}, {"id": 1, "shout": "B!!!"}]
    wrong = runner.invoke(
        cli, ["batch", "shout", str(src), str(tmp_path / "o2.jsonl"), "-o", "loud=1"]
    )
    assert wrong.exit_code != 0 and "loud" in wrong.output and "marks" in wrong.output
    assert not (tmp_path / "o2.jsonl").exists()
    typo = runner.invoke(cli, ["batch", "shuot", str(src), str(out)])
    assert typo.exit_code != 0 and "did you mean shout?" in typo.output


def test_a_registered_task_is_a_route_in_openapi(shout: TaskSpec, fake_store: Store) -> None:
    provider = ModelProvider(fake_store, n_seq=2, n_ctx=2048)
    with TestClient(create_app(ServerSettings(), provider)) as client:
        spec = client.get("/openapi.json").json()
        route = spec["paths"]["/v1/tasks/shout"]["post"]
        assert route["summary"] == "Upper-case each text and add exclamation marks."
        schema_ref = route["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        props = spec["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]["properties"]
        assert {"input", "model", "marks"} <= set(props)
        ok = client.post("/v1/tasks/shout", json={"input": ["a", "b"], "marks": 1})
        assert ok.status_code == 200, ok.text
        assert [d["shout"] for d in ok.json()["data"]] == ["A!", "B!"]
        assert client.post("/v1/tasks/shout", json={"input": "a", "marks": 7}).status_code in (
            400,
            422,
        )
        assert client.post("/v1/tasks/shout", json={"input": []}).status_code == 400
        # built-in tasks keep their own routes: none is generated twice
        assert not [
            p for p in spec["paths"] if p.startswith("/v1/tasks/") and p != "/v1/tasks/shout"
        ]


def test_redact_is_a_task_and_runs_under_slm_batch(tmp_path: Path) -> None:
    assert registry.get("redact").route == "/v1/redact"
    src = tmp_path / "in.jsonl"
    rows = [{"id": "a", "text": "mail bob@example.com now"}, {"id": "b", "text": "call 10.0.0.7"}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(cli, ["batch", "redact", str(src), str(out), "--kinds", "email,ip"])
    assert res.exit_code == 0, res.output
    got = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert got["a"]["text"] == "mail [EMAIL] now"
    assert got["a"]["entities"] == [{"kind": "email", "start": 5, "end": 20}]
    assert got["b"]["text"] == "call [IP]"


def test_registry_rules() -> None:
    assert set(registry.names()) >= {"classify", "summarize", "extract", "embed", "redact"}
    with pytest.raises(InputError, match="already registered"):
        registry.register(registry.get("redact"))
    with pytest.raises(InputError, match="lower-case identifiers"):
        registry.register(TaskSpec("Bad-Name", "", TaskOptions, {}, build_shout))
    with pytest.raises(InputError, match="did you mean redact"):
        registry.get("redcat")
    assert registry.for_rows({"document", "summary", "id"}).name == "summarize"  # type: ignore[union-attr]
    assert registry.for_rows({"text", "label_text"}).name == "classify"  # type: ignore[union-attr]
    assert registry.for_rows({"text"}) is None
    with pytest.raises(InputError, match="bogus"):
        registry.get("redact").parse({"kinds": "email", "bogus": 1})
