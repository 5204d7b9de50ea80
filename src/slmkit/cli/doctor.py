"""`slm doctor`: what this install has and whether it can reach the network."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from typing import Any

import click

from slmkit.cli.base import cli, fail_cleanly, human, open_store
from slmkit.cli.version import backends_found

PROBE = ("192.0.2.1", 9)  # TEST-NET-1 (RFC 5737): never routed, so a probe sends nothing real
ONLINE_PROBE = ("1.1.1.1", 443)


def network_status(timeout: float = 2.0) -> dict[str, Any]:
    """With the guard on, prove it: a connection attempt is stopped before any packet.
    With it off, try one TCP connection out."""
    from slmkit import offline

    if offline.is_enabled():
        try:
            socket.create_connection(PROBE, timeout=timeout).close()
        except OSError as exc:
            blocked = "offline" in str(exc)
            return {
                "guard": "on",
                "reachable": False,
                "detail": "a test connection was stopped by the guard" if blocked else str(exc),
            }
        return {"guard": "on", "reachable": True, "detail": "guard did not stop a connection"}
    try:
        socket.create_connection(ONLINE_PROBE, timeout=timeout).close()
        return {"guard": "off", "reachable": True, "detail": f"connected to {ONLINE_PROBE[0]}"}
    except OSError as exc:
        return {"guard": "off", "reachable": False, "detail": f"no route out ({exc})"}


def _disk(root: Path) -> dict[str, Any]:
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    return {
        "path": str(root),
        "free_gb": round(usage.free / 2**30, 1),
        "total_gb": round(usage.total / 2**30, 1),
    }


def llama_build() -> dict[str, Any]:
    """Which llama.cpp build is installed (the recipe, from the wheel slmkit built), the CPU
    features it was compiled for, and a fresh probe: a one-token decode in a child process."""
    import sys

    from slmkit.runtime import native

    wheel = native.installed_wheel(sys.executable)
    recipe = Path(wheel).parent.name.rsplit("-", 1)[0] if wheel else None
    result = native.probe()
    return {
        "recipe": recipe or "not built by slmkit (pip's build: -march=native, AMX included)",
        "wheel": wheel,
        "features": sorted(k for k, v in result.features.items() if v),
        "probe": result.as_dict(),
        "fix": None if result.ok else native.failure_line(result),
    }


def report() -> dict[str, Any]:
    from slmkit.bench.machine import machine_info

    store = open_store()
    installed = [
        {"id": e.id, "kind": e.kind, "size": human(e.size_bytes)}
        for e in store.entries()
        if store.path(e.id) is not None
    ]
    backends = backends_found()
    return {
        "machine": machine_info(),
        "store": {**_disk(store.root), "installed": installed},
        "backends": backends,
        "llama_cpp": llama_build(),
        "network": network_status(),
    }


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@fail_cleanly
def doctor(as_json: bool) -> None:
    """Report models, backends, versions, memory, CPU flags, store disk space, and whether
    this process can reach the network (the offline guard is on unless lifted)."""
    info = report()
    if as_json:
        click.echo(json.dumps(info))
        return
    m, st, net = info["machine"], info["store"], info["network"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    lines = [
        f"cpu       {m['cpu']} ({m['arch']}), {m['cores']} cores; flags {' '.join(m['cpu_flags'])}",
        f"memory    {m['ram_gb']} GB, {m['ram_available_gb']} GB available; "
        f"load {m['load_average']}",
        f"versions  {versions}",
        f"store     {st['path']}: {st['free_gb']} GB free of {st['total_gb']} GB",
        f"models    {len(st['installed'])} installed: "
        + ", ".join(f"{x['id']} ({x['size']})" for x in st["installed"]),
        "backends  "
        + ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in info["backends"].items()),
        _llama_line(info["llama_cpp"]),
        f"network   guard {net['guard']}; reachable: {'yes' if net['reachable'] else 'no'} "
        f"({net['detail']})",
    ]
    click.echo("\n".join(lines))
    if info["llama_cpp"]["fix"]:
        click.echo(f"error: {info['llama_cpp']['fix']}", err=True)
        raise SystemExit(1)


def _llama_line(b: dict[str, Any]) -> str:
    probe = b["probe"]
    verdict = (
        f"probe passed in {probe['seconds']} s" if probe["ok"] else f"probe FAILED: {b['fix']}"
    )
    amx = "AMX on" if any(f.startswith("AMX") for f in b["features"]) else "AMX off"
    return f"llama.cpp {b['recipe']} build; {amx}; {' '.join(b['features'])}; {verdict}"
