"""The offline guard: while on, any outbound connection (or name lookup) from this process
to an address other than loopback fails with OfflineError naming the code that tried.

It is a `sys.addaudithook` hook on the `socket.connect`, `socket.getaddrinfo` and
`socket.sendto` events, so it covers every library in the process (http.client, urllib3,
httpx, huggingface_hub, ...), not only slmkit's own calls. Audit hooks cannot be removed,
so the hook is installed once and reads one process-wide switch: the guard protects the
whole process by design, which is why this is module state. Child processes (pip during
`slm pull`, benchmark cells) are not covered by the hook; they inherit SLMKIT_OFFLINE
and Hugging Face's offline variables instead.

`slm` turns it on for every command except `pull` (SLMKIT_OFFLINE=0 or `slm --online`
turns it off); library users call `slmkit.offline.enable()`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import sys
import threading
import traceback
from collections.abc import Iterator
from typing import Any

from slmkit.errors import OfflineError

_state = {"on": False, "hooked": False}
_lifted = threading.local()  # a pull lifts the guard for its own thread only
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}
HF_OFFLINE = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def is_loopback(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a name other than localhost would be looked up: not loopback


def _caller() -> str:
    """The innermost frame outside the socket plumbing, and slmkit's own frame if any."""
    frames = traceback.extract_stack()[:-3]
    plumbing = ("socket.py", "ssl.py", "offline.py", "selectors.py", "connection.py")
    outer = next((f for f in reversed(frames) if not f.filename.endswith(plumbing)), frames[-1])
    mine = next(
        (
            f
            for f in reversed(frames)
            if "/slmkit/" in f.filename.replace("\\", "/") and not f.filename.endswith("offline.py")
        ),
        None,
    )
    where = f"{_short(outer.filename)}:{outer.lineno} in {outer.name}()"
    if mine is not None and mine is not outer:
        where += f", called from {_short(mine.filename)}:{mine.lineno} in {mine.name}()"
    return where


def _short(path: str) -> str:
    parts = path.replace("\\", "/").split("/")
    return "/".join(parts[-2:])


def _hook(event: str, args: tuple[Any, ...]) -> None:
    depth: int = getattr(_lifted, "depth", 0)
    if not _state["on"] or depth:
        return
    if event == "socket.getaddrinfo":
        host, port = args[0], args[1]
    elif event in ("socket.connect", "socket.sendto"):
        sock, address = args[0], args[1]
        if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
            return  # Unix sockets and the like never leave the machine
        host, port = (address[0], address[1]) if isinstance(address, tuple) else (address, "")
    else:
        return
    if not is_loopback(host):
        raise OfflineError(
            f"offline: blocked a connection to {host}:{port} from {_caller()}. slmkit is "
            "offline by default; `slm pull` fetches models, SLMKIT_OFFLINE=0 lifts the guard"
        )


def enable() -> None:
    """Turn the guard on for this process (and mark Hugging Face libraries offline)."""
    if not _state["hooked"]:
        sys.addaudithook(_hook)
        _state["hooked"] = True
    _state["on"] = True
    for var in HF_OFFLINE:
        os.environ.setdefault(var, "1")
    os.environ["SLMKIT_OFFLINE"] = "1"


def disable() -> None:
    _state["on"] = False
    os.environ["SLMKIT_OFFLINE"] = "0"


def is_enabled() -> bool:
    return bool(_state["on"])


def wanted() -> bool:
    """SLMKIT_OFFLINE: on unless set to 0/false/no/off."""
    return os.environ.get("SLMKIT_OFFLINE", "1").strip().lower() not in ("0", "false", "no", "off")


@contextlib.contextmanager
def lifted() -> Iterator[None]:
    """Let this thread connect out (an explicit pull from a remote source)."""
    _lifted.depth = getattr(_lifted, "depth", 0) + 1
    try:
        yield
    finally:
        _lifted.depth -= 1
