"""Compress a fine-tuned encoder classifier: ONNX export (fp32 or per-channel dynamic int8 with
onnxruntime's quantizer), or dynamic int8 Linear layers in PyTorch (applied at load)."""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path

from slmkit.runtime.encoder import TORCH_INT8_KEY, import_torch

ENCODER_TYPES = ("int8", "onnx", "int8-torch")
TOKENIZER_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


def _copy_meta(src: Path, dst: Path) -> None:
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)


def export_onnx(src: Path, dst: Path) -> Path:
    """fp32 `dst/model.onnx` with dynamic batch and sequence axes."""
    torch = import_torch()
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(src)).eval()
    tok = AutoTokenizer.from_pretrained(str(src))
    enc = tok(["an example sentence", "two"], padding=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in enc]
    axes = {n: {0: "batch", 1: "seq"} for n in names} | {"logits": {0: "batch"}}
    out = dst / "model.onnx"
    # The tracer warns about Python-side branches in HF attention code; the graph is checked by
    # the guard's measurement instead.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            tuple(enc[n] for n in names),
            str(out),
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    _copy_meta(src, dst)
    return out


def compress_encoder(src: Path, dst: Path, qtype: str) -> str:
    """Write the compressed model into dst; returns its main file name."""
    if qtype == "int8-torch":
        shutil.copyfile(src / "model.safetensors", dst / "model.safetensors")
        _copy_meta(src, dst)
        config = json.loads((dst / "config.json").read_text())
        config[TORCH_INT8_KEY] = True
        (dst / "config.json").write_text(json.dumps(config, indent=2))
        return "model.safetensors"
    fp32 = export_onnx(src, dst)
    if qtype == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = dst / "model.fp32.onnx"
        fp32.rename(tmp)
        root = logging.getLogger()
        level = root.level
        root.setLevel(
            logging.ERROR
        )  # its "consider pre-processing" hint is for static quantization
        try:
            quantize_dynamic(str(tmp), str(fp32), per_channel=True, weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        tmp.unlink()
    return "model.onnx"
