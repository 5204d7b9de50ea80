"""Llama-3.2-1B-Instruct's shape without its weights (none are reachable offline): a tiny
random-weight Llama with Llama 3 rope scaling and tied embeddings, on the real Llama 3
tokenizer (from its package) and the Llama 3 chat format. It runs through the transformers
backend from its Hugging Face folder and, converted to GGUF by slmkit, through llama.cpp; the
two agree on tokens, chat prompt, greedy text and log-probabilities."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import slmkit
from slmkit.catalog.store import Store

# The Llama 3 instruct chat format (header tokens, end-of-turn <|eot_id|>); Llama 3.2's own
# template adds a dated system header by default, which the format does not need.
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>"
    "\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
SAMPLES = [
    "Hello world! It's 2026; we're testing 1234567 tokens.",
    "  leading spaces, tabs\tand\nnew lines\n\n  ",
    "Unicode: café, naïve, 東京, emoji 🚀 and ßtraße.",
    "<|eot_id|> is a special token, <|begin_of_text|> too.",
]
LONG = " ".join(f"Item {i} of the list is {i * 7 % 13}." for i in range(20))  # > 64 positions
LOGPROB_TOL = 0.02  # F16 weights in llama.cpp vs fp32 in PyTorch; measured 0.0066 (3.35 unscaled)


def _build(tok_dir: Path, out: Path, rope: dict[str, Any]) -> Any:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    tokenizer.chat_template = LLAMA3_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        rope_parameters=rope,
        bos_token_id=128000,
        eos_token_id=[128001, 128008, 128009],
        initializer_range=0.2,  # peaked next-token distributions, so greedy text is stable
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return model


@pytest.fixture(scope="module")
def tiny(real_store: Store, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from slmkit.catalog.assets import LLAMA3_TOKENIZER, asset_dir
    from slmkit.runtime.gguf_export import export_hf_gguf

    tok_dir = asset_dir(real_store, LLAMA3_TOKENIZER, pull=True)
    tmp = tmp_path_factory.mktemp("llama3")
    # Llama 3.2's rope scaling, with the original context cut to 64 so that it matters at once.
    rope = {
        "rope_type": "llama3",
        "rope_theta": 500000.0,
        "factor": 32.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    }
    model = _build(tok_dir, tmp / "tiny-llama3", rope)
    gguf_path = export_hf_gguf(
        model, tok_dir, tmp / "tiny-llama3.F16.gguf", chat_template=LLAMA3_TEMPLATE
    )
    # The same weights, written as if the rope were unscaled: the control that shows the
    # agreement below depends on the rope factors.
    model.config.rope_parameters = {"rope_type": "default", "rope_theta": 500000.0}
    plain = export_hf_gguf(model, tok_dir, tmp / "plain.F16.gguf", chat_template=LLAMA3_TEMPLATE)
    return {"hf": tmp / "tiny-llama3", "gguf": gguf_path, "plain": plain}


@pytest.fixture(scope="module")
def both(tiny: dict[str, Path]) -> Iterator[tuple[slmkit.Model, slmkit.Model]]:
    cpp = slmkit.load(tiny["gguf"], n_ctx=512)
    hf = slmkit.load(str(tiny["hf"]), n_ctx=512)
    assert (cpp.backend.name, hf.backend.name) == ("llamacpp", "transformers")
    yield cpp, hf
    cpp.close()
    hf.close()


def test_gguf_has_llama3_rope_factors_and_no_separate_output_matrix(
    tiny: dict[str, Path],
) -> None:
    import gguf

    reader = gguf.GGUFReader(str(tiny["gguf"]))
    names = {t.name for t in reader.tensors}
    assert "rope_freqs.weight" in names and "output.weight" not in names  # tied embeddings
    assert str(reader.fields["tokenizer.ggml.pre"].contents()) == "llama-bpe"
    assert len(reader.fields["tokenizer.ggml.tokens"].contents()) == 128257


@pytest.mark.parametrize("text", SAMPLES)
def test_llama_cpp_tokenizes_like_the_real_llama3_tokenizer(
    both: tuple[slmkit.Model, slmkit.Model], text: str
) -> None:
    cpp, hf = both
    assert cpp.backend.tokenize(text) == hf.backend.tokenize(text)
    if "<|" not in text:  # llama.cpp leaves control tokens out of text; transformers keeps them
        ids = hf.backend.tokenize(text, add_special=False)
        assert cpp.backend.detokenize(ids) == hf.backend.detokenize(ids) == text


def test_chat_prompt_is_the_llama3_format_on_both_backends(
    both: tuple[slmkit.Model, slmkit.Model],
) -> None:
    cpp, hf = both
    msgs = [{"role": "user", "content": "What is 2+2?"}]
    want = (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert cpp.format_chat(msgs, system="") == hf.format_chat(msgs, system="") == want
    assert cpp.backend.tokenize(want) == hf.backend.tokenize(want, add_special=False)


def test_greedy_text_and_log_probabilities_agree_past_the_original_context(
    both: tuple[slmkit.Model, slmkit.Model], tiny: dict[str, Path]
) -> None:
    cpp, hf = both
    assert len(hf.backend.tokenize(LONG)) > 64
    a = cpp.complete(LONG, max_tokens=16, temperature=0)
    b = hf.complete(LONG, max_tokens=16, temperature=0)
    assert a.stats.completion_tokens == b.stats.completion_tokens == 16
    assert a.text == b.text
    cont = " Item 20 of the list is 10."
    x, y = cpp.loglikelihood(LONG, cont), hf.loglikelihood(LONG, cont)
    gaps = [abs(p - q) for p, q in zip(x.token_logprobs, y.token_logprobs, strict=True)]
    assert max(gaps) < LOGPROB_TOL, gaps
    with slmkit.load(tiny["plain"], n_ctx=512) as plain:  # rope factors left out
        z = plain.loglikelihood(LONG, cont)
    worst = max(abs(p - q) for p, q in zip(z.token_logprobs, y.token_logprobs, strict=True))
    assert worst > 10 * LOGPROB_TOL, worst
