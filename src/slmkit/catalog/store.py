"""The local model store: one folder per model, atomic writes, a manifest per file."""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from slmkit import offline
from slmkit.catalog.builtin import BUILTIN
from slmkit.catalog.entries import Architecture, LocalSource, ModelEntry, license_terms
from slmkit.catalog.sources import Advance, fetch, how_to_get
from slmkit.errors import (
    ChecksumError,
    InputError,
    ModelNotFoundError,
    ModelNotInstalledError,
    SourceUnavailableError,
)
from slmkit.settings import Settings

MANIFEST = "manifest.json"
ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@contextlib.contextmanager
def atomic_writer(target: Path) -> Iterator[IO[bytes]]:
    """Yield a temp file beside target; rename it into place only if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    hold(fd)  # held while this writes: a leftover nobody holds is cleaned
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# `MODEL@source` loads MODEL's own file even where `slm optimize` registered a variant for it.
SOURCE_SUFFIX = "@source"


class Store:
    """Models on disk under one root: `<root>/models/<id>/<file>` plus `manifest.json`."""

    def __init__(self, root: Path | None = None, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.root = Path(root) if root is not None else self.settings.store_dir()

    # --- lookup -----------------------------------------------------------------------
    def model_dir(self, model_id: str) -> Path:
        return self.root / "models" / model_id

    def manifest(self, model_id: str) -> dict[str, Any] | None:
        """The manifest of an installed model, or None if not installed (or unreadable)."""
        path = self.model_dir(model_id) / MANIFEST
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        file = self.model_dir(model_id) / data.get("filename", "")
        if not file.is_file() or file.stat().st_size != data.get("size_bytes"):
            return None
        return data

    def entries(self) -> list[ModelEntry]:
        """Built-in entries followed by imported ones."""
        out = list(BUILTIN)
        known = {e.id for e in out}
        models = self.root / "models"
        for d in sorted(models.iterdir()) if models.is_dir() else []:
            if d.name.startswith("."):  # a model being built, or one being replaced
                continue
            m = self.manifest(d.name)
            if m and d.name not in known and m.get("entry"):
                out.append(ModelEntry.model_validate(m["entry"]))
        return out

    def preferred(self, model_id: str) -> str:
        """The id to load for `model_id`: its newest installed variant made by `slm optimize`
        for this model, else itself. `MODEL@source` always names the original file."""
        if model_id.endswith(SOURCE_SUFFIX):
            return model_id.removesuffix(SOURCE_SUFFIX)
        variants = [
            e
            for e in self.entries()
            if (e.lineage or {}).get("replaces") == model_id and self.path(e.id) is not None
        ]
        if not variants:
            return model_id
        return max(variants, key=lambda e: str((e.lineage or {}).get("date", ""))).id

    def get(self, model_id: str) -> ModelEntry:
        """Find an entry by id; ModelNotFoundError with suggestions when unknown."""
        model_id = model_id.removesuffix(SOURCE_SUFFIX)
        entries = self.entries()
        for e in entries:
            if e.id == model_id:
                return e
        ids = [e.id for e in entries]
        close = difflib.get_close_matches(model_id, ids, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ModelNotFoundError(
            f"unknown model {model_id!r}.{hint} Run `slm models` for the list, "
            "or `slm import PATH` to add a local GGUF."
        )

    def path(self, model_id: str) -> Path | None:
        """Path of the installed file, or None."""
        model_id = model_id.removesuffix(SOURCE_SUFFIX)
        m = self.manifest(model_id)
        return self.model_dir(model_id) / m["filename"] if m else None

    def require(self, model_id: str) -> tuple[ModelEntry, Path]:
        """Entry and file path of an installed model; ModelNotInstalledError otherwise."""
        entry = self.get(model_id)
        path = self.path(model_id)
        if path is None:
            raise ModelNotInstalledError(
                f"model {model_id!r} is not installed; run `slm pull {model_id}`"
            )
        return entry, path

    # --- writing ------------------------------------------------------------------------
    def _write_manifest(self, entry: ModelEntry, sha256: str, size: int, origin: str) -> None:
        data = {
            "id": entry.id,
            "filename": entry.filename,
            "sha256": sha256,
            "size_bytes": size,
            "source": origin,
            "installed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "license": entry.license,
            "license_terms": license_terms(entry.license),
            "entry": entry.model_dump(mode="json") if entry.imported else None,
        }
        with atomic_writer(self.model_dir(entry.id) / MANIFEST) as f:
            f.write(json.dumps(data, indent=2).encode())

    def pull(
        self,
        model_id: str,
        *,
        force: bool = False,
        progress: Callable[[int], Advance] | None = None,
    ) -> Path:
        """Install a catalog model from its first working source; return the file path.

        The file is verified against the sha256 pin before it is renamed into place, so an
        interrupted or failed pull never leaves a file that looks complete.
        """
        entry = self.get(model_id)
        existing = self.path(model_id)
        if existing is not None and not force:
            return existing
        self.clean_leftovers()
        target = self.model_dir(entry.id) / entry.filename
        errors: list[str] = []
        for source in entry.sources:
            advance = progress(entry.size_bytes or 0) if progress else (lambda n: None)
            digest = hashlib.sha256()
            try:
                # an explicit pull is the one thing that may connect out (slmkit.offline)
                with offline.lifted(), atomic_writer(target) as out:
                    origin = fetch(source, out, digest, advance, self.settings)
                    self._verify(entry, digest.hexdigest(), out.tell())
            except SourceUnavailableError as e:
                errors.append(str(e))
                continue
            self._write_manifest(entry, digest.hexdigest(), target.stat().st_size, origin)
            return target
        raise SourceUnavailableError(
            f"cannot pull {entry.id}: " + "; ".join(errors) + f". Instead: {how_to_get(entry)}"
        )

    @staticmethod
    def _verify(entry: ModelEntry, sha256: str, size: int) -> None:
        if entry.size_bytes is not None and size != entry.size_bytes:
            raise ChecksumError(
                f"{entry.id}: the file is {size} bytes, expected {entry.size_bytes} "
                "(incomplete download or a different file); not installed"
            )
        if entry.sha256 is not None and sha256 != entry.sha256:
            raise ChecksumError(
                f"{entry.id}: sha256 mismatch (got {sha256[:16]}…, pinned {entry.sha256[:16]}…); "
                "the file was not installed"
            )

    def import_file(
        self,
        path: Path,
        *,
        model_id: str | None = None,
        progress: Callable[[int], Advance] | None = None,
    ) -> ModelEntry:
        """Copy a local GGUF into the store, reading its metadata; return its new entry."""
        from slmkit.catalog.gguf_info import read_gguf_info

        path = Path(path).expanduser().resolve()
        if not path.is_file():
            raise InputError(f"no such file: {path}")
        self.clean_leftovers()
        info = read_gguf_info(path)
        match = catalog_match(path)
        model_id = model_id or (match.id if match else _slug(path.stem))
        if not ID_RE.match(model_id):
            raise InputError(f"invalid model id {model_id!r}: use a-z, 0-9, '.', '_', '-'")
        if any(e.id == model_id for e in BUILTIN):
            builtin = self.get(model_id)
            entry = builtin  # importing a file for a catalog model: it must match the pin
        else:
            entry = entry_from_info(model_id, path, info)
        size = path.stat().st_size
        if entry.size_bytes is not None and size != entry.size_bytes:
            self._verify(entry, "", size)  # fail before copying a file that cannot match
        advance = progress(size) if progress else (lambda n: None)
        digest = hashlib.sha256()
        target = self.model_dir(entry.id) / entry.filename
        with atomic_writer(target) as out:
            origin = fetch(LocalSource(path=str(path)), out, digest, advance, self.settings)
            self._verify(entry, digest.hexdigest(), out.tell())
        self._write_manifest(entry, digest.hexdigest(), size, origin)
        return entry

    def check_new_id(self, model_id: str, *, force: bool = False) -> None:
        """Raise InputError unless model_id can name a new model made here."""
        if not ID_RE.match(model_id):
            raise InputError(f"invalid model id {model_id!r}: use a-z, 0-9, '.', '_', '-'")
        if any(e.id == model_id for e in BUILTIN):
            raise InputError(f"{model_id!r} is a catalog model; choose another id")
        if not force and self.model_dir(model_id).exists():
            raise InputError(f"model {model_id!r} already exists (remove it or pass --force)")

    def staging_dir(self, model_id: str) -> Path:
        """A fresh folder inside the store where a model is built before `register_dir`
        (locked while this process lives, so a killed build's folder is cleaned later)."""
        return new_staging(self.root / "models", model_id)

    def clean_leftovers(self) -> list[Path]:
        """Remove what killed writers left in the model store (see `clean_dir`)."""
        return clean_dir(self.root / "models")

    def register_dir(self, entry: ModelEntry, folder: Path, *, force: bool = False) -> Path:
        """Make a finished model folder (from `staging_dir`) an installed model, in one rename.

        The manifest is written inside the folder first, so the model is either absent or
        complete; a model of the same id is replaced only with `force`.
        """
        self.check_new_id(entry.id, force=force)
        main = folder / entry.filename
        if not main.is_file():
            raise InputError(f"{folder} has no {entry.filename}")
        if entry.format == "gguf":
            from slmkit.catalog.gguf_check import check_gguf

            check_gguf(main)  # what slmkit wrote is checked like what it imports
        data = {
            "id": entry.id,
            "filename": entry.filename,
            "sha256": file_sha256(main),
            "size_bytes": main.stat().st_size,
            "source": "made here",
            "installed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "license": entry.license,
            "license_terms": license_terms(entry.license),
            "entry": entry.model_dump(mode="json"),
        }
        write_manifest_and_promote(folder, data, self.model_dir(entry.id))
        return self.model_dir(entry.id)

    def remove(self, model_id: str) -> bool:
        """Delete an installed model's folder; return whether anything was removed."""
        import shutil

        d = self.model_dir(model_id)
        if not d.is_dir():
            return False
        shutil.rmtree(d)
        return True


LOCK = ".lock"
_HELD: dict[str, int] = {}  # staging folder -> its lock's descriptor, kept until registered


def new_staging(parent: Path, name: str) -> Path:
    """A fresh `.staging-NAME-*` folder under parent, locked while this process lives, so a
    killed writer's folder is told from work in progress and cleaned later."""
    parent.mkdir(parents=True, exist_ok=True)
    clean_dir(parent)
    folder = Path(tempfile.mkdtemp(prefix=f".staging-{name}-", dir=parent))
    fd = os.open(folder / LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    hold(fd)
    _HELD[str(folder)] = fd
    return folder


def _release(folder: Path) -> None:
    """Close the lock this process holds on a staging folder (if any)."""
    fd = _HELD.pop(str(folder), None)
    if fd is not None:
        os.close(fd)


def drop_staging(folder: Path) -> None:
    """Release and delete a staging folder whose work failed."""
    import shutil

    _release(folder)
    shutil.rmtree(folder, ignore_errors=True)


def clean_dir(parent: Path) -> list[Path]:
    """Remove what killed writers left under parent (partial files, staging and replaced
    folders, folders without a manifest); never what a live process holds."""
    import shutil

    gone: list[Path] = []
    for d in sorted(parent.iterdir()) if parent.is_dir() else []:
        if not d.is_dir():
            continue
        if d.name.startswith((".staging-", ".old-")):
            if not held(d / LOCK) and not _pid_alive(d.name):
                shutil.rmtree(d, ignore_errors=True)
                gone.append(d)
            continue
        stale = [f for f in d.glob(".*.partial") if not held(f)]
        for f in stale:
            f.unlink(missing_ok=True)
            gone.append(f)
        busy = any(d.glob(".*.partial"))
        if not busy and not (d / MANIFEST).exists() and not d.name.startswith("."):
            shutil.rmtree(d, ignore_errors=True)  # a file renamed in, its manifest never
            gone.append(d)
    return gone


def write_manifest_and_promote(folder: Path, manifest: dict[str, Any], final: Path) -> None:
    """Write the manifest inside a finished staging folder, then rename it to final (an
    existing final is moved aside first and removed after): absent or complete, never half."""
    import shutil

    (folder / LOCK).unlink(missing_ok=True)
    _release(folder)
    with atomic_writer(folder / MANIFEST) as f:
        f.write(json.dumps(manifest, indent=2).encode())
    old = None
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        final.rename(old)
    folder.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def hold(fd: int) -> None:
    """Take an exclusive lock on an open descriptor; the kernel drops it when the process
    dies (however it dies), which is how cleaning tells leftovers from work in progress."""
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def held(path: Path) -> bool:
    """Whether a live process holds the lock on `path` (False if it does not exist)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing also releases a lock this probe took
    return False


def _pid_alive(name: str) -> bool:
    """For `.old-ID-PID` folders: whether that process still runs."""
    pid = name.rsplit("-", 1)[-1]
    if not name.startswith(".old-") or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except OSError:
        return False
    return True


def file_sha256(path: Path) -> str:
    """A file's sha256, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _slug(stem: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._")[:64] or "model"


def catalog_match(path: Path) -> ModelEntry | None:
    """The built-in entry this file looks like (same file name and size), if any.

    Cheap by design (no hashing): used to carry catalog knowledge such as the default
    system prompt over to a file loaded by path; pulls and imports still verify sha256.
    """
    size = path.stat().st_size
    for e in BUILTIN:
        if e.filename == path.name and e.size_bytes == size:
            return e
    return None


def entry_from_info(model_id: str, path: Path, info: Any) -> ModelEntry:
    match = catalog_match(path)
    arch = None
    if info.n_layer and info.n_head_kv and info.head_dim and info.n_embd:
        arch = Architecture(
            n_layer=int(info.n_layer),
            n_head_kv=int(info.n_head_kv),
            head_dim=int(info.head_dim),
            n_embd=int(info.n_embd),
        )
    return ModelEntry(
        id=model_id,
        family=info.architecture,
        params=info.params,
        context_length=int(info.context_length or 2048),
        license=info.license or "unknown",
        format="gguf",
        quantization=info.quantization,
        backend="llamacpp",
        chat_template="gguf" if info.chat_template else "none",
        filename=path.name,
        size_bytes=path.stat().st_size,
        sources=(LocalSource(path=str(path)),),
        arch=arch,
        default_system_prompt=match.default_system_prompt if match else None,
        description=f"Imported from {path.name} ({info.name or info.architecture}).",
        imported=True,
    )
