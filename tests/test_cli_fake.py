"""The command line in-process (click's runner) on fake models in a temp store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import tests.fakes  # noqa: F401  (registers the fake backend)
from slmkit.catalog.store import Store


@pytest.fixture
def run(fake_store: Store, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from slmkit.cli import cli

    monkeypatch.setenv("SLMKIT_HOME", str(fake_store.root))

    def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        return CliRunner().invoke(cli, list(args), input=input, env=env)

    return invoke


def test_importing_the_package_yields_every_command() -> None:
    from slmkit.cli import cli

    assert set(cli.commands) == {
        "kb",
        "ask",
        "models",
        "pull",
        "import",
        "info",
        "rm",
        "run",
        "chat",
        "demo",
        "classify",
        "train-classifier",
        "summarize",
        "extract",
        "embed",
        "eval",
        "serve",
        "finetune",
        "quantize",
        "optimize",
        "bench",
        "report",
        "recommend",
        "doctor",
        "redact",
        "batch",
        "data",
        "deploy",
    }


def test_run_streams_a_reply(run) -> None:  # type: ignore[no-untyped-def]
    r = run("run", "fake-chat", "hello there", "--temperature", "0")
    assert r.exit_code == 0 and r.output.strip() == "You said: hello there (café)"


def test_run_reads_stdin_and_raw(run) -> None:  # type: ignore[no-untyped-def]
    r = run("run", "fake-base", "--raw", "--temperature", "0", input="one two\n")
    assert r.exit_code == 0 and r.output.strip() == "two one"


def test_errors_are_one_line_and_nonzero(run) -> None:  # type: ignore[no-untyped-def]
    r = run("run", "no-such-model", "hi")
    assert r.exit_code == 1 and r.output.startswith("error: unknown model")
    r = run("run", "fake-chat", "hi", "--temperature", "-3")
    assert r.exit_code == 1 and "temperature" in r.output
    r = run("run", "fake-base", "hi")
    assert r.exit_code == 1 and "chat template" in r.output


def test_models_json_lists_installed_fakes(run) -> None:  # type: ignore[no-untyped-def]
    r = run("models", "--json")
    rows = {m["id"]: m for m in json.loads(r.output)["models"]}
    assert rows["fake-chat"]["installed"] and not rows["smollm2-135m-instruct"]["installed"]


def test_chat_keeps_history_and_resets(run) -> None:  # type: ignore[no-untyped-def]
    r = run("chat", "fake-chat", "--temperature", "0", input="first\n/reset\nsecond\n/exit\n")
    assert r.exit_code == 0
    assert "You said: first (café)" in r.output and "You said: second (café)" in r.output


def test_classify_zero_shot_from_a_file(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "in.jsonl"
    f.write_text('{"text": "total spam"}\n{"oops": 1}\n{"text": "ham and eggs"}\n')
    r = run("classify", "--model", "fake-chat", "--labels", "ham,spam", "--file", str(f))
    lines = [json.loads(x) for x in r.output.splitlines() if x.startswith("{")]
    assert [x["label"] for x in lines] == ["spam", "ham"]
    assert "in.jsonl:2" in r.output  # the bad row is reported, not silently dropped


def test_serve_flags_and_environment_agree(run) -> None:  # type: ignore[no-untyped-def]
    env = {
        "SLMKIT_SERVE_PARALLEL": "3",
        "SLMKIT_SERVE_PORT": "9001",
        "SLMKIT_SERVE_LOG_PROMPTS": "true",
    }
    shown = json.loads(run("serve", "--show-settings", env=env).output)
    assert (shown["parallel"], shown["port"], shown["log_prompts"]) == (3, 9001, True)
    shown = json.loads(
        run(
            "serve", "--show-settings", "--parallel", "5", "--model", "a", "--model", "b", env=env
        ).output
    )
    assert (shown["parallel"], shown["port"], shown["models"]) == (5, 9001, ["a", "b"])
    assert json.loads(run("serve", "--show-settings").output)["parallel"] == 16


def test_serve_refuses_bad_settings(run) -> None:  # type: ignore[no-untyped-def]
    r = run("serve", "--show-settings", env={"SLMKIT_SERVE_PARALLEL": "0"})
    assert r.exit_code == 1 and "parallel" in r.output
    r = run("serve", "--parallel", "99")
    assert r.exit_code == 1 and "parallel" in r.output


def test_show_settings_hides_api_keys(run) -> None:  # type: ignore[no-untyped-def]
    out = run("serve", "--show-settings", "--api-key", "s3cret").output
    assert "s3cret" not in out and json.loads(out)["api_keys"] == ["***"]


def test_measure_commands_fail_cleanly(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = run("bench", "--models", "fake-chat", "--tasks", "nope", "--out", str(tmp_path / "b"))
    assert r.exit_code == 1 and r.output.startswith("error: unknown task 'nope'")
    r = run("bench", "--models", "not-a-model", "--tasks", "sst2", "--out", str(tmp_path / "b"))
    assert r.exit_code == 1 and "unknown model 'not-a-model'" in r.output
    r = run("report", str(tmp_path))
    assert r.exit_code == 1 and "holds no benchmark results" in r.output
    r = run("recommend", "--task", "nope", "--ram-gb", "1")
    assert r.exit_code == 1 and "unknown task" in r.output
    r = run("classify", "hi", "--labels", "a,b", "--cascade", "fake-chat")
    assert r.exit_code == 1 and "SMALL,LARGE" in r.output


def test_recommend_without_measurements_says_estimate(run) -> None:  # type: ignore[no-untyped-def]
    small = json.loads(run("recommend", "--task", "sst2", "--ram-gb", "0.5", "--json").output)
    big = json.loads(run("recommend", "--task", "sst2", "--ram-gb", "8", "--json").output)
    assert small["pick"] != big["pick"]
    assert "Not measured on sst2 yet" in small["reason"] and "estimate" in small["reason"]
    assert all(not c["measured"] for c in big["candidates"])


def test_models_table_never_cuts_an_id_in_80_columns(run) -> None:  # type: ignore[no-untyped-def]
    """Users copy ids from this table: at 80 columns (and 60) every id is printed whole on
    its row; the other columns shrink instead."""
    from slmkit.catalog.builtin import BUILTIN

    ids = [e.id for e in BUILTIN] + ["fake-chat", "fake-base"]
    assert max(map(len, ids)) >= 25  # the long Qwen ids are the ones that used to be cut
    for cols in ("80", "60"):
        r = run("models", env={"COLUMNS": cols})
        assert r.exit_code == 0, r.output
        lines = r.output.splitlines()
        assert max(map(len, lines)) <= int(cols)
        for i in ids:
            rows = [line for line in lines if line.split()[:1] == [i]]
            assert len(rows) == 1, (cols, i, r.output)  # on its row, in one table (not two)
        assert lines[-2:] == [
            "assets: (none installed: slm pull minilm)",
            "datasets: (none installed: slm data list)",
        ]


def test_run_and_chat_flags_are_the_generation_options(run) -> None:  # type: ignore[no-untyped-def]
    """One flag per GenerationOptions field (bar the API-only ones), generated: a new option
    is a new flag, and the values are GenerationOptions' to check."""
    from slmkit.cli import cli
    from slmkit.cli.generate import NOT_FLAGS
    from slmkit.options import GenerationOptions

    wanted = {n for n in GenerationOptions.model_fields if n not in NOT_FLAGS}
    for command in ("run", "chat"):
        params = {p.name for p in cli.commands[command].params}
        assert wanted <= params, (command, wanted - params)
    args = ("run", "fake-chat", "hello there", "--temperature", "0")
    r = run(*args, "--min-p", "0.1", "--repeat-penalty", "1.1", "--stop", "(", "--seed", "3")
    assert r.exit_code == 0 and r.output.strip() == "You said: hello there", r.output
    r = run(*args, "--min-p", "2")
    assert r.exit_code == 1 and "min_p" in r.output
