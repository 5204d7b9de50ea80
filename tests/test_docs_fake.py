"""Every `slm` command written in the README's and docs/'s fenced shell blocks parses against
the CLI as it is: the command exists, every option is one it takes, every value has the
type and range the option accepts. (Parsed, not run: running them all would take hours of
model time; tests/test_wheel.py runs the README's Install block for real.) A line marked
`# network` or `# cluster` is skipped, as are placeholders written `[--flag]`."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from slmkit.cli import cli

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(bash|sh|shell|console)?\s*$\n(.*?)^```", re.M | re.S)


def doc_commands() -> list[tuple[str, str]]:
    """(where, command) for each `slm ...` command in a fenced shell block."""
    out = []
    for doc in DOCS:
        text = doc.read_text()
        for m in FENCE.finditer(text):
            block = m.group(2).replace("\\\n", " ")
            lineno = text[: m.start()].count("\n") + 2
            for i, line in enumerate(block.splitlines()):
                if re.search(r"#\s*(network|cluster)\b", line):
                    continue
                for part in re.split(r"&&|\||;", re.sub(r"\s+#.*$", "", line)):
                    words = part.strip().split()
                    while words and "=" in words[0]:  # VAR=value slm ...
                        words.pop(0)
                    if words[:1] == ["slm"] or words[:1] == [".venv/bin/slm"]:
                        out.append((f"{doc.name}:{lineno + i}", " ".join(words[1:])))
    return out


@pytest.fixture(scope="module")
def dry_cli() -> Iterator[click.Group]:
    """The real `slm` group with every command's body replaced by nothing: click still
    resolves each command and parses and converts every option and argument."""
    saved: dict[click.Command, Any] = {}

    def walk(cmd: click.Command) -> None:
        saved[cmd] = cmd.callback
        cmd.callback = lambda *a, **k: None
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    walk(cli)
    try:
        yield cli
    finally:
        for cmd, callback in saved.items():
            cmd.callback = callback


def parse(group: click.Group, command: str) -> None:
    args = [a for a in shlex.split(command.rstrip("&").strip()) if not re.fullmatch(r"\[.*\]", a)]
    group.main(args, prog_name="slm", standalone_mode=False)


COMMANDS = doc_commands()


def test_the_docs_have_commands() -> None:
    assert len(COMMANDS) > 80
    assert any(c.startswith("data pull sst2") for _, c in COMMANDS)


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_doc_command_parses(dry_cli: click.Group, where: str, command: str) -> None:
    try:
        parse(dry_cli, command)
    except click.exceptions.Exit:
        pass  # --help, --version
    except click.BadParameter as e:
        if "does not exist" not in str(e):  # example files (data.jsonl) are the reader's
            raise AssertionError(f"{where}: slm {command}\n{e.format_message()}") from e
    except click.ClickException as e:
        raise AssertionError(f"{where}: slm {command}\n{e.format_message()}") from e


def test_design_page_names_every_package_and_module() -> None:
    """docs/design.md is redrawn with the code: every package, top-level module and the
    modules the walkthrough and the engine rest on are named there, and it links nowhere
    outside the repository."""
    root = Path(__file__).parents[1]
    page = (root / "docs" / "design.md").read_text()
    src = root / "src" / "slmkit"
    names = [f"{p.name}/" for p in src.iterdir() if (p / "__init__.py").is_file()]
    names += [p.name for p in src.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    names += ["registry.py", "drafting.py", "scoring.py", "memory.py", "lineage.py"]
    missing = [n for n in names if n not in page]
    assert not missing, missing
    assert "../" not in page
