"""`slm serve`. Its flags are generated from `ServerSettings`' fields, so a flag and its
SLMKIT_SERVE_* variable always mean the same thing; a flag given wins over the variable."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import click

from slmkit.cli.base import F, cli, fail_cleanly, field_options
from slmkit.errors import InvalidOptionsError
from slmkit.settings import ServerSettings


def settings_options(fn: F) -> F:
    """One option per ServerSettings field, defaulting to None (= not given)."""
    return field_options(ServerSettings, env_prefix="SLMKIT_SERVE_")(fn)


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
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help="Serve as a Ray Serve deployment (alone: a Ray started here; or a cluster address). "
    "Needs `pip install 'slmkit[ray]'`.",
)
@click.option("--replicas", type=click.IntRange(min=1), default=1, help="--ray: replicas.")
@click.option(
    "--max-replicas",
    type=click.IntRange(min=1),
    default=None,
    help="--ray: autoscale from --replicas up to this many.",
)
@fail_cleanly
def serve(show_settings: bool, ray_address: str | None, **given: Any) -> None:
    """Serve an OpenAI-compatible API (and a chat page at /) with continuous batching."""
    replicas, max_replicas = given.pop("replicas"), given.pop("max_replicas")
    settings = settings_from(given)
    if show_settings:
        shown = settings.model_dump(mode="json")
        shown["api_keys"] = ["***" for _ in settings.api_keys]  # never print secrets
        click.echo(json.dumps(shown))
        return
    if ray_address is not None:
        from slmkit.scale.ray_serve import run

        click.echo(f"serving on Ray Serve at http://{settings.host}:{settings.port}", err=True)
        run(settings, ray_address, replicas=replicas, max_replicas=max_replicas)
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
