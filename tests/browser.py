"""Headless Chromium (Debian's package) driven by Playwright, for the chat page's tests.
Playwright's own browser download cannot work offline; `make test` installs chromium."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Chromium must not phone home: this machine's network is closed.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium(bypass_csp: bool = True) -> Iterator[Any]:
    """A persistent browser context (own profile, so localStorage lives across pages)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (make test installs Debian's chromium package)")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            # Playwright's wait_for_function evaluates strings, which the page's policy forbids;
            # so the hostile-output tests check the sanitising alone, not the policy behind it
            bypass_csp=bypass_csp,
        )
        yield ctx
        ctx.close()


def page_errors(page: Any) -> list[str]:
    """Collects the page's uncaught JS errors and console errors (a test asserts none)."""
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return errors
