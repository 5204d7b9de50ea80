"""Write a transformers causal LM (e.g. one fine-tuned here) back to an F16 GGUF, taking every
metadata field (hyper-parameters, tokenizer, chat template) from the GGUF it was loaded from.

Written here because llama.cpp's converter (convert_hf_to_gguf.py) is a script in its
repository, in no package; with the source GGUF at hand only the tensors need writing, which
the gguf package's writer and HF-to-GGUF tensor-name map do. Llama and Qwen2 layouts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from slmkit.errors import ModelFormatError

SKIPPED_KEYS = ("general.architecture", "general.file_type", "general.quantization_version")
ARCHS = ("llama", "qwen2")


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo transformers' reordering of Llama's q/k rows (llama.cpp keeps Meta's rope layout)."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _copy_metadata(reader: Any, writer: Any) -> None:
    import gguf

    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in SKIPPED_KEYS:
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def export_gguf(model: Any, source: Path, dst: Path) -> Path:
    """F16 GGUF of `model`'s weights (2-D tensors f16, norms f32) with `source`'s metadata."""
    import gguf

    reader = gguf.GGUFReader(str(source))
    arch = str(reader.fields["general.architecture"].contents())
    if arch not in ARCHS:
        raise ModelFormatError(f"GGUF export supports {', '.join(ARCHS)}, not {arch}")
    n_head = int(reader.fields[f"{arch}.attention.head_count"].contents())
    kv = reader.fields.get(f"{arch}.attention.head_count_kv")
    n_head_kv = int(kv.contents()) if kv else n_head
    n_blocks = int(reader.fields[f"{arch}.block_count"].contents())
    by_name = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}
    names = gguf.get_tensor_name_map(by_name[arch], n_blocks)
    wanted = {t.name for t in reader.tensors}
    writer = gguf.GGUFWriter(str(dst), arch)
    _copy_metadata(reader, writer)
    written = set()
    for hf_name, tensor in model.state_dict().items():
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None or name not in wanted or name in written:
            continue  # rotary buffers, a tied lm_head the source does not store
        data = tensor.detach().float().numpy()
        if arch == "llama" and name.endswith("attn_q.weight"):
            data = _permute(data, n_head)
        elif arch == "llama" and name.endswith("attn_k.weight"):
            data = _permute(data, n_head_kv)
        writer.add_tensor(name, data.astype(np.float16 if data.ndim == 2 else np.float32))
        written.add(name)
    missing = sorted(wanted - written)
    if missing:
        raise ModelFormatError(f"the model lacks tensors the GGUF needs: {', '.join(missing[:5])}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dst
