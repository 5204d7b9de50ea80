"""Datasets in the store: `<root>/data/<name>/<files>` plus `manifest.json`, installed by
`slm data pull` from a local copy or the network, every file checked against the catalog's
sha256 before the folder is renamed into place (the model store's staging and locking, so a
killed pull leaves nothing that looks installed and the next command cleans it)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slmkit import offline
from slmkit.catalog.datasets import DATASETS, DataFile, DatasetEntry, Upstream, dataset
from slmkit.catalog.sources import Advance, copy_hashing
from slmkit.catalog.store import (
    MANIFEST,
    clean_dir,
    drop_staging,
    new_staging,
    write_manifest_and_promote,
)
from slmkit.errors import ChecksumError, DataError, DataNotInstalledError, SourceUnavailableError
from slmkit.settings import Settings

DATA_DIR_ENV = "SLMKIT_DATA_DIR"
Files = dict[str, bytes]


def local_copy(folder: Path, entry: DatasetEntry, f: DataFile) -> Path | None:
    """Where a local folder holds one of the dataset's files: DIR/NAME/FILE (a copy of
    shared/data) or DIR/FILE (the dataset's own folder)."""
    for cand in (folder / entry.name / f.name, folder / f.name):
        if cand.is_file():
            return cand
    return None


class DataStore:
    """The datasets of one store root (the model store's root: $SLMKIT_HOME)."""

    def __init__(self, root: Path | None = None, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.root = Path(root) if root is not None else self.settings.store_dir()
        self.parent = self.root / "data"

    def manifest(self, name: str) -> dict[str, Any] | None:
        """The manifest of an installed dataset whose files are all present, else None."""
        folder = self.parent / name
        try:
            data: dict[str, Any] = json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        files = data.get("files", {})
        if not files or not all((folder / n).is_file() for n in files):
            return None
        return data

    def path(self, name: str, split_or_file: str) -> Path | None:
        entry = dataset(name)
        if self.manifest(name) is None:
            return None
        return self.parent / name / entry.file(split_or_file).name

    def require(self, name: str, split_or_file: str) -> Path:
        """The installed file; installed from $SLMKIT_DATA_DIR first when that is set;
        otherwise DataNotInstalledError naming `slm data pull`."""
        entry = dataset(name)
        path = self.path(name, split_or_file)
        if path is not None:
            return path
        env = os.environ.get(DATA_DIR_ENV)
        if env:
            self.pull(name, from_dir=Path(env))
            return self.parent / name / entry.file(split_or_file).name
        raise DataNotInstalledError(
            f"dataset {name} is not installed: run `slm data pull {name}` "
            f"(or `slm data pull {name} --from DIR` with a local copy)"
        )

    def installed(self) -> dict[str, dict[str, Any]]:
        return {d.name: m for d in DATASETS if (m := self.manifest(d.name)) is not None}

    def pull(
        self,
        name: str,
        *,
        from_dir: Path | None = None,
        force: bool = False,
        progress: Callable[[int], Advance] | None = None,
    ) -> Path:
        """Install a catalog dataset, verified; return its folder. `from_dir` is a local copy
        (DIR/NAME/FILE or DIR/FILE); without it, $SLMKIT_DATA_DIR, then the network."""
        entry = dataset(name)
        final = self.parent / name
        if self.manifest(name) is not None and not force:
            return final
        env = os.environ.get(DATA_DIR_ENV)
        local = from_dir if from_dir is not None else (Path(env) if env else None)
        if local is not None:
            _check_local(local, entry)
        staging = new_staging(self.parent, name)
        total = entry.size_bytes if local is not None else 0  # upstream sizes differ: unknown
        advance = progress(total) if progress else (lambda n: None)
        try:
            origin = self._fill(staging, entry, local, advance)
            manifest = _manifest(entry, origin)
            write_manifest_and_promote(staging, manifest, final)
        except BaseException:
            drop_staging(staging)
            raise
        return final

    def _fill(
        self, staging: Path, entry: DatasetEntry, local: Path | None, advance: Advance
    ) -> str:
        if local is None:
            files = _network_files(entry, advance, self.settings)
        for f in entry.files:
            digest = hashlib.sha256()
            with (staging / f.name).open("wb") as out:
                if local is not None:
                    src = local_copy(local, entry, f)
                    assert src is not None  # _check_local saw every file
                    with src.open("rb") as inp:
                        copy_hashing(inp, out, digest, advance)
                    where = str(src)
                else:
                    out.write(files[f.name])
                    digest.update(files[f.name])
                    where = f"{f.name} built from {entry.upstream[0].repo}"
                out.flush()
                os.fsync(out.fileno())
            _verify(entry, f, where, digest.hexdigest(), (staging / f.name).stat().st_size)
        return (
            f"local:{local.resolve()}" if local is not None else f"github:{entry.upstream[0].repo}"
        )

    def remove(self, name: str) -> bool:
        dataset(name)
        folder = self.parent / name
        if not folder.is_dir():
            return False
        shutil.rmtree(folder)
        return True

    def clean_leftovers(self) -> list[Path]:
        return clean_dir(self.parent)


def _check_local(folder: Path, entry: DatasetEntry) -> None:
    """Every file of the dataset is in the folder, before anything is copied."""
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder; nothing installed")
    for f in entry.files:
        if local_copy(folder, entry, f) is None:
            raise DataError(
                f"{folder} has no {entry.name}/{f.name} (the {f.split} split of {entry.name}); "
                "nothing installed"
            )


def _verify(entry: DatasetEntry, f: DataFile, where: str, sha256: str, size: int) -> None:
    if size != f.size_bytes or sha256 != f.sha256:
        raise ChecksumError(
            f"{where} is not the pinned {entry.name} {f.split} file (sha256 {sha256[:12]}…, "
            f"{size} bytes; expected {f.sha256[:12]}…, {f.size_bytes} bytes); nothing installed"
        )


def _manifest(entry: DatasetEntry, origin: str) -> dict[str, Any]:
    return {
        "name": entry.name,
        "files": {f.name: f.sha256 for f in entry.files},
        "size_bytes": entry.size_bytes,
        "source": origin,
        "installed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "license": entry.license,
        "license_note": entry.license_note,
        "citation": entry.citation,
    }


def _network_files(entry: DatasetEntry, advance: Advance, settings: Settings) -> Files:
    """The dataset's files rebuilt from its upstream files (each checked against its own
    pin), for the datasets stored verbatim or with a converter; fails at once otherwise."""
    from slmkit.catalog.data_convert import CONVERTERS

    convert = CONVERTERS.get(entry.name)
    other_ways = (
        f"`slm data pull {entry.name} --from DIR` with a copy of its files "
        f"({', '.join(x.name for x in entry.files)}), or set {DATA_DIR_ENV}"
    )
    if convert is None and not entry.verbatim:
        up = entry.upstream[0]
        raise SourceUnavailableError(
            f"{entry.name} has no network source slmkit can rebuild: its files were made from "
            f"{up.repo}@{up.commit[:7]} ({entry.splits}); instead: {other_ways}"
        )
    got = {u.path: _download(u, advance, settings, other_ways) for u in entry.upstream}
    if convert is None:  # verbatim: the upstream file is the stored file
        return {f.name: got[u.path] for f, u in zip(entry.files, entry.upstream, strict=True)}
    return convert(got)


def _download(up: Upstream, advance: Advance, settings: Settings, other_ways: str) -> bytes:
    import httpx

    url = f"{settings.data_base_url.rstrip('/')}/{up.repo}/{up.commit}/{up.path}"
    buf = bytearray()
    try:
        with offline.lifted(), httpx.stream("GET", url, timeout=settings.hf_timeout_s) as resp:
            resp.raise_for_status()
            for block in resp.iter_bytes(1 << 20):
                buf += block
                advance(len(block))
    except httpx.HTTPError as e:
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise SourceUnavailableError(
            f"cannot download {url} ({reason}); instead: {other_ways}"
        ) from e
    if up.sha256 is not None and hashlib.sha256(buf).hexdigest() != up.sha256:
        raise ChecksumError(
            f"{url} is not the pinned upstream file (sha256 differs); nothing installed"
        )
    return bytes(buf)
