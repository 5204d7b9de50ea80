"""The llama.cpp build installed here (by `make`): slmkit's own, without AMX, and it decodes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from slmkit.runtime import native

pytestmark = pytest.mark.real_model


def test_the_installed_build_is_this_cpus_own_and_passes_the_probe() -> None:
    wheel = native.installed_wheel(sys.executable)
    assert wheel is not None and wheel.startswith(str(native.cache_root() / "llama-wheels"))
    result = native.probe()
    assert result.ok, native.failure_line(result)
    on = {k for k, v in result.features.items() if v}
    assert "REPACK" in on and not {f for f in on if f.startswith("AMX")}
    assert native.verified_build().ok


def test_doctor_reports_the_build_and_the_probe() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "slmkit", "doctor", "--json"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    llama = json.loads(done.stdout)["llama_cpp"]
    assert llama["probe"]["ok"] and llama["fix"] is None
    assert llama["recipe"] in ("native-no-amx", "portable")
