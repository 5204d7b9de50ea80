"""`slm serve`. Its flags are generated from `ServerSettings`' fields, so a flag and its
SLMKIT_SERVE_* variable always mean the same thing; a flag given wins over the variable."""

from __future__ import annotations

import json
import logging
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from slmkit.cli.base import F, cli, fail_cleanly
from slmkit.errors import InvalidOptionsError
from slmkit.settings import ServerSettings


def _click_type(annotation: Any) -> tuple[Any, bool, bool]:
    """(click type, multiple, is_flag) for a settings field's annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _click_type(args[0])
    if origin is tuple:
        return args[0], True, False
    if annotation is bool:
        return bool, False, True
    if annotation is Path:
        return click.Path(dir_okay=False, path_type=Path), False, False
    return annotation, False, False


def settings_options(fn: F) -> F:
    """One option per ServerSettings field, defaulting to None (= not given)."""
    for name, field in reversed(ServerSettings.model_fields.items()):
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        flag = "--" + str(extra.get("flag", name.replace("_", "-")))
        kind, multiple, is_flag = _click_type(field.annotation)
        env = f"SLMKIT_SERVE_{name.upper()}"
        default = "" if field.default in (None, ()) else f"; default {field.default}"
        help_ = f"{field.description} [env {env}{default}]"
        if is_flag:
            fn = click.option(flag, name, is_flag=True, default=None, help=help_)(fn)
        else:
            fn = click.option(flag, name, type=kind, multiple=multiple, default=None, help=help_)(
                fn
            )
    return fn


def settings_from(given: dict[str, Any]) -> ServerSettings:
    """Settings from the environment, overridden by the flags that were given."""
    from pydantic import ValidationError

    flags = {k: v for k, v in given.items() if v is not None and v != ()}
    try:
        return ServerSettings(**flags)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise InvalidOptionsError(f"invalid server settings: {problems}") from e


@cli.command()
@settings_options
@click.option(
    "--show-settings", is_flag=True, help="Print the settings in effect as JSON and exit."
)
@fail_cleanly
def serve(show_settings: bool, **given: Any) -> None:
    """Serve an OpenAI-compatible API (and a chat page at /) with continuous batching."""
    settings = settings_from(given)
    if show_settings:
        shown = settings.model_dump(mode="json")
        shown["api_keys"] = ["***" for _ in settings.api_keys]  # never print secrets
        click.echo(json.dumps(shown))
        return
    _run(settings, click.echo)


def _run(settings: ServerSettings, say: Callable[..., Any]) -> None:
    import uvicorn

    from slmkit.serve import ModelProvider, create_app

    provider = ModelProvider.from_settings(settings)
    if settings.log_prompts:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = create_app(settings, provider)  # reads --keys-file: fails before listening
    models = ", ".join(provider.available())
    say(f"serving on http://{settings.host}:{settings.port} (models: {models})", err=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
