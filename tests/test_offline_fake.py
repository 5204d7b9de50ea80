"""The offline guard: connections other than loopback fail, naming the caller; loopback,
an explicit pull, and `--online` are allowed; `slm doctor` proves it."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from slmkit import offline
from slmkit.errors import OfflineError


@pytest.fixture
def guard() -> Iterator[None]:
    was = offline.is_enabled()
    offline.enable()
    yield
    if not was:
        offline.disable()


def test_outbound_connection_is_blocked_and_names_the_call(guard: None) -> None:
    with pytest.raises(OfflineError, match=r"blocked a connection to 192\.0\.2\.1:9 from") as err:
        socket.create_connection(("192.0.2.1", 9), timeout=1)
    assert "test_offline_fake.py" in str(err.value)
    assert "test_outbound_connection_is_blocked_and_names_the_call" in str(err.value)


def test_name_lookups_and_libraries_are_blocked(guard: None) -> None:
    with pytest.raises(OfflineError, match="example.com"):
        socket.getaddrinfo("example.com", 443)
    with pytest.raises(OSError, match="offline"):  # urllib wraps it in URLError
        urllib.request.urlopen("http://192.0.2.1/", timeout=1)
    import httpx

    with pytest.raises(httpx.ConnectError, match="offline"):
        httpx.get("http://192.0.2.1:9/", timeout=1)


def test_loopback_and_lifted_are_allowed(guard: None) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    with socket.create_connection(srv.getsockname(), timeout=1):
        pass
    srv.close()
    assert offline.is_loopback("localhost") and offline.is_loopback("::1")
    assert not offline.is_loopback("10.0.0.1") and not offline.is_loopback("example.com")
    with (
        offline.lifted(),
        pytest.raises(OSError) as err,
    ):  # the attempt goes through (and times out)
        socket.create_connection(("192.0.2.1", 9), timeout=0.05)
    assert not isinstance(err.value, OfflineError)


def test_cli_turns_it_on_except_for_pull_and_online(fake_store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from slmkit.cli import cli

    monkeypatch.setenv("SLMKIT_HOME", str(fake_store.root))
    monkeypatch.delenv("SLMKIT_OFFLINE", raising=False)
    try:
        r = CliRunner().invoke(cli, ["doctor", "--json"])
        assert r.exit_code == 0, r.output
        net = json.loads(r.output)["network"]
        assert net == {
            "guard": "on",
            "reachable": False,
            "detail": "a test connection was stopped by the guard",
        }
        assert offline.is_enabled()
        CliRunner().invoke(cli, ["pull", "no-such-model"])
        assert not offline.is_enabled()
        CliRunner().invoke(cli, ["models"], env={"SLMKIT_OFFLINE": "0"})
        assert not offline.is_enabled()
        r = CliRunner().invoke(cli, ["doctor"])
        assert "fake-chat" in r.output and "backends  llamacpp: yes" in r.output
    finally:
        offline.disable()
