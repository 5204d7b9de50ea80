"""Write a transformers causal LM to an F16 GGUF that llama.cpp runs.

`export_gguf`: a model loaded from a GGUF (e.g. fine-tuned here) goes back with every metadata
field (hyper-parameters, tokenizer, chat template) taken from that source GGUF; Llama and
Qwen2 layouts. `export_hf_gguf`: a Hugging Face Llama with a byte-level BPE tokenizer (Llama
3's) and no GGUF behind it: hyper-parameters from its config, the vocabulary, merges and
special tokens through the gguf package's BpeVocab/SpecialVocab, and Llama 3 rope scaling as
llama.cpp's `rope_freqs` factors.

Written here because llama.cpp's converter (convert_hf_to_gguf.py) is a script in its
repository, in no package; the gguf package's writer, vocabulary readers and HF-to-GGUF
tensor-name map do the rest.
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
    writer = gguf.GGUFWriter(str(dst), arch)
    _copy_metadata(reader, writer)
    _write_tensors(writer, model, arch, n_head, n_head_kv, {t.name for t in reader.tensors})
    _finish(writer)
    return dst


def _finish(writer: Any) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _write_tensors(
    writer: Any, model: Any, arch: str, n_head: int, n_head_kv: int, wanted: set[str]
) -> None:
    """Each of `wanted` from the model's state dict: 2-D weights as f16, the rest f32."""
    import gguf

    by_name = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}
    names = gguf.get_tensor_name_map(by_name[arch], int(model.config.num_hidden_layers))
    written = set()
    for hf_name, tensor in model.state_dict().items():
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None or name not in wanted or name in written:
            continue  # rotary buffers, a tied lm_head the GGUF does not store
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


def _llama_tensor_names(n_blocks: int, tied: bool) -> set[str]:
    import gguf

    arch = gguf.MODEL_ARCH.LLAMA
    out = set()
    for t in gguf.MODEL_TENSORS[arch]:
        template = gguf.TENSOR_NAMES[t]
        for b in range(n_blocks) if "{bid}" in template else (0,):
            out.add(template.format(bid=b) + ".weight")
    keep = {
        "token_embd", "output_norm", "output", "attn_norm", "attn_q", "attn_k", "attn_v",
        "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down",
    }  # fmt: skip
    out = {n for n in out if n.split(".")[-2] in keep}
    return out - {"output.weight"} if tied else out


def rope_factors(model: Any) -> np.ndarray | None:
    """llama.cpp's `rope_freqs` for a scaled rope (Llama 3): plain frequency / the model's own
    (scaled) frequency, per rotary dimension pair; None for an unscaled rope."""
    cfg = model.config
    params = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    if params.get("rope_type", "default") == "default":
        return None
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    theta = float(params.get("rope_theta") or cfg.rope_theta)
    plain = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    scaled = model.model.rotary_emb.inv_freq.detach().double().numpy()
    out: np.ndarray = (plain / scaled).astype(np.float32)
    return out


def _llama_hparams(w: Any, cfg: Any, n_head_kv: int, n_vocab: int) -> None:
    import gguf

    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    params = getattr(cfg, "rope_parameters", None) or {}
    theta = params.get("rope_theta") or getattr(cfg, "rope_theta", None) or 10000.0
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_dimension_count(head_dim)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(float(theta))
    w.add_vocab_size(n_vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)


def export_hf_gguf(
    model: Any, tokenizer_dir: Path, dst: Path, *, chat_template: str | None = None
) -> Path:
    """F16 GGUF of a Hugging Face Llama whose byte-level BPE tokenizer is in tokenizer_dir."""
    import gguf

    cfg = model.config
    if cfg.model_type != "llama":
        raise ModelFormatError(
            f"export from a Hugging Face model supports llama, not {cfg.model_type}"
        )
    try:
        vocab = gguf.BpeVocab(tokenizer_dir)
    except (FileNotFoundError, ValueError) as e:
        raise ModelFormatError(f"{tokenizer_dir}: not a byte-level BPE tokenizer ({e})") from e
    if vocab.vocab_size != cfg.vocab_size:
        raise ModelFormatError(
            f"the tokenizer has {vocab.vocab_size} tokens, the model {cfg.vocab_size}"
        )
    special = gguf.SpecialVocab(tokenizer_dir, load_merges=True, n_vocab=vocab.vocab_size)
    if chat_template is not None:
        special.chat_template = chat_template
    n_head_kv = cfg.num_key_value_heads or cfg.num_attention_heads
    w = gguf.GGUFWriter(str(dst), "llama")
    w.add_name(dst.stem)
    _llama_hparams(w, cfg, n_head_kv, vocab.vocab_size)
    tokens, _, types = zip(*vocab.all_tokens(), strict=True)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")  # Llama 3's pre-tokenizer regex, as llama.cpp names it
    w.add_token_list(list(tokens))
    w.add_token_types(list(types))
    special.add_to_gguf(w, quiet=True)
    factors = rope_factors(model)
    if factors is not None:
        w.add_tensor(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", factors)
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    wanted = _llama_tensor_names(cfg.num_hidden_layers, tied)
    _write_tensors(w, model, "llama", cfg.num_attention_heads, n_head_kv, wanted)
    _finish(w)
    return dst
