"""Shared fixtures. Real models come from the user's store (pulled once, then cached)."""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import slmkit
from slmkit.catalog.entries import ModelEntry, PyPISource, WheelMember
from slmkit.catalog.store import Store
from slmkit.settings import Settings

# The built-in datasets install into whichever store a test uses from this repository's
# sibling copy (verified against the catalog's sha256 on first use, as `slm data pull
# --from` would); a test about missing data removes the variable.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if SHARED_DATA.is_dir():
    os.environ.setdefault("SLMKIT_DATA_DIR", str(SHARED_DATA))

REAL_FIXTURES = {"real_store", "smollm", "smollm_path", "int8"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses a real-model fixture is a real-model test, wherever it lives."""
    for item in items:
        if REAL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real_model)


@pytest.fixture
def fake_store(tmp_path: Path) -> Store:
    """An empty store in a temp dir holding two fake models (a chat and a base one)."""
    from tests.fakes import fake_entry, install_fake

    store = Store(tmp_path / "store", Settings(home=tmp_path / "store"))
    install_fake(store, fake_entry("fake-chat"))
    install_fake(store, fake_entry("fake-base", chat=False))
    return store


@pytest.fixture
def fake_model(fake_store: Store) -> Iterator[slmkit.Model]:
    model = slmkit.load("fake-chat", store=fake_store)
    yield model
    model.close()


@pytest.fixture(scope="session")
def real_store() -> Store:
    """The store real-model tests share: $SLMKIT_HOME or the platform data dir."""
    return Store()


@pytest.fixture(scope="session")
def smollm(real_store: Store) -> Iterator[slmkit.Model]:
    real_store.pull(slmkit.DEFAULT_MODEL)
    model = slmkit.load(slmkit.DEFAULT_MODEL, store=real_store, n_ctx=2048)
    yield model
    model.close()


@pytest.fixture(scope="session")
def smollm_path(real_store: Store) -> Path:
    real_store.pull(slmkit.DEFAULT_MODEL)
    path = real_store.path(slmkit.DEFAULT_MODEL)
    assert path is not None
    return path


def make_wheel(dest: Path, package: str, version: str, files: dict[str, bytes]) -> Path:
    """Write a minimal valid wheel holding `files` (for offline pull tests)."""
    dist = package.replace("-", "_")
    path = dest / f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    meta = {
        f"{info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n".encode()
        ),
        f"{info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    allfiles = {**files, **meta}
    record = "".join(f"{name},,\n" for name in allfiles) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in allfiles.items():
            zf.writestr(name, data)
        zf.writestr(f"{info}/RECORD", record)
    return path


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A 3 MB file split into two part-package wheels in a local index folder (what a
    pull does with them does not depend on the bytes being a model)."""
    import numpy as np

    dest = tmp_path_factory.mktemp("wheelhouse")
    data = np.random.default_rng(0).bytes(3_000_001)
    half = len(data) // 2
    for i, chunk in enumerate((data[:half], data[half:]), 1):
        make_wheel(dest, f"slmkit-test-part{i}", "1.0", {f"slmkit_test_part{i}/data/p.bin": chunk})
    return {
        "dir": dest,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }


def split_entry(wheelhouse: dict[str, object], **overrides: object) -> ModelEntry:
    """A catalog entry whose file is the two wheelhouse parts concatenated."""
    parts = tuple(
        WheelMember(
            package=f"slmkit-test-part{i}", version="1.0", member=f"slmkit_test_part{i}/data/p.bin"
        )
        for i in (1, 2)
    )
    fields: dict[str, object] = dict(
        id="split-smollm",
        family="smollm2",
        params=1,
        context_length=2048,
        license="apache-2.0",
        format="gguf",
        quantization="Q4_1",
        backend="llamacpp",
        chat_template="gguf",
        filename="split.gguf",
        size_bytes=wheelhouse["size"],
        sha256=wheelhouse["sha256"],
        sources=(PyPISource(parts=parts),),
    )
    fields.update(overrides)
    return ModelEntry.model_validate(fields)


class CatalogStore(Store):
    """A store over a tmp dir whose catalog also holds the given test entries."""

    def __init__(self, root: Path, extra: list[ModelEntry], pip_args: str = "") -> None:
        super().__init__(root, Settings(home=root, pip_args=pip_args))
        self.extra = extra

    def entries(self) -> list[ModelEntry]:
        return super().entries() + self.extra


@pytest.fixture
def offline_pip(wheelhouse: dict[str, object]) -> str:
    return f"--no-index --find-links {wheelhouse['dir']}"
