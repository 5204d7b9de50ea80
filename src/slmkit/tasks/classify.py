"""Text classification three ways: zero-shot, few-shot (both by label log-likelihood on an
SLM) and a trained head (embeddings + scikit-learn logistic regression)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from slmkit.engine.batch import score_many
from slmkit.engine.core import Engine
from slmkit.errors import ChatTemplateError, InputError, LabelError
from slmkit.model import Model
from slmkit.tasks.data import check_texts
from slmkit.tasks.embed import Embedder

CONTENT_FREE = ("N/A", "[MASK]", "")  # contextual calibration inputs (Zhao et al., 2021)
HEAD_FORMAT = "slmkit-head/1"


@dataclass(frozen=True)
class Prediction:
    """The chosen label and a probability for every label."""

    label: str
    probs: dict[str, float]


def check_labels(labels: Sequence[str]) -> tuple[str, ...]:
    out = tuple(labels)
    if len(out) < 2:
        raise LabelError(f"need at least two labels, got {len(out)}: {list(out)}")
    if any(not isinstance(lb, str) or not lb.strip() for lb in out):
        raise LabelError("labels must be non-empty strings")
    dupes = sorted({lb for lb in out if out.count(lb) > 1})
    if dupes:
        raise LabelError(f"duplicate labels: {', '.join(dupes)}")
    return out


def softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return out


def predictions(labels: Sequence[str], probs: np.ndarray) -> list[Prediction]:
    return [
        Prediction(
            labels[int(row.argmax())], {lb: float(p) for lb, p in zip(labels, row, strict=True)}
        )
        for row in probs
    ]


def classify_body(instruction: str, words: Sequence[str], text: str, shots: str = "") -> str:
    """The zero-shot question whose answer is a label word (fine-tuning a chat model for
    classification trains on the same)."""
    return f"{instruction}\nAnswer with one of: {', '.join(words)}.\n\n{shots}Text: {text}"


class LikelihoodClassifier:
    """Zero-shot (or few-shot, with `examples`) classification by label log-likelihood.

    Each label word is scored as the answer to a prompt; scores are length-normalized
    (mean log-prob per token) and, with `calibrate`, divided by the probabilities the model
    gives the labels for content-free inputs, so a prior bias towards one label cancels.
    """

    def __init__(
        self,
        model: Model,
        labels: Sequence[str],
        *,
        instruction: str = "Classify the text.",
        template: str | None = None,
        label_words: Sequence[str] | None = None,
        calibrate: bool = True,
        normalize: bool = True,
        batched: bool = True,
        engine: Engine | None = None,
        window: int | None = None,
    ) -> None:
        self.model = model
        # a server's engine: labels are scored in its batch, with the other traffic
        self.engine, self.window = engine, window
        self.labels = check_labels(labels)
        words = (
            tuple(label_words) if label_words else tuple(lb.replace("_", " ") for lb in self.labels)
        )
        if len(words) != len(self.labels):
            raise LabelError("label_words must have one entry per label")
        self.words = check_labels(words)
        self.instruction = instruction
        if template is not None and "{text}" not in template:
            raise InputError("a prompt template must contain {text} (and may use {labels})")
        self.template = template
        self.calibrate, self.normalize, self.batched = calibrate, normalize, batched
        self._chat = model.backend.chat_template() is not None
        self._prior: np.ndarray | None = None

    def prompt(self, text: str, examples: Sequence[tuple[str, str]] = ()) -> str:
        """The prompt whose continuation is a label word."""
        choices = ", ".join(self.words)
        shots = "".join(f"Text: {t}\nAnswer: {w}\n\n" for t, w in examples)
        if self.template is not None:
            body = shots + self.template.replace("{labels}", choices).replace("{text}", text)
        else:
            body = classify_body(self.instruction, self.words, text, shots)
        if not self._chat:
            return body + "\nAnswer:"
        try:
            return self.model.format_chat([{"role": "user", "content": body}])
        except ChatTemplateError:
            return body + "\nAnswer:"

    def _continuation(self, word: str) -> str:
        return word if self._chat else " " + word

    def _scores(self, prompts: Sequence[str]) -> np.ndarray:
        pairs = [(p, self._continuation(w)) for p in prompts for w in self.words]
        if self.engine is not None:
            lls = score_many(self.model, pairs, engine=self.engine, window=self.window)
        elif self.batched:
            lls = self.model.loglikelihood_many(pairs)
        else:
            lls = [self.model.loglikelihood(c, x) for c, x in pairs]
        vals = [ll.logprob / ll.n_tokens if self.normalize else ll.logprob for ll in lls]
        return np.asarray(vals).reshape(len(prompts), len(self.words))

    def prior(self) -> np.ndarray:
        """Mean label distribution over content-free inputs (computed once)."""
        if self._prior is None:
            self._prior = softmax(self._scores([self.prompt(t) for t in CONTENT_FREE])).mean(axis=0)
        return self._prior

    def predict_prompts(self, prompts: Sequence[str]) -> list[Prediction]:
        probs = softmax(self._scores(prompts))
        if self.calibrate:
            probs = probs / self.prior()
            probs = probs / probs.sum(axis=1, keepdims=True)
        return predictions(self.labels, probs)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        return self.predict_prompts([self.prompt(t) for t in check_texts(texts)])


class FewShotClassifier:
    """k labelled examples in the prompt, the most similar to each text by embedding."""

    def __init__(
        self,
        base: LikelihoodClassifier,
        train_texts: Sequence[str],
        train_labels: Sequence[str],
        embedder: Embedder,
        k: int = 4,
    ) -> None:
        if k < 1:
            raise InputError("k must be at least 1")
        if len(train_texts) != len(train_labels) or not train_texts:
            raise InputError("few-shot needs labelled examples (texts and labels of equal length)")
        unknown = sorted(set(train_labels) - set(base.labels))
        if unknown:
            raise LabelError(f"example labels not in the label set: {', '.join(unknown[:5])}")
        self.base, self.k, self.embedder = base, k, embedder
        self.texts, self.labels = list(train_texts), list(train_labels)
        self.vecs = embedder.embed(self.texts)
        self.word = dict(zip(base.labels, base.words, strict=True))

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        batch = check_texts(texts)
        sims = self.embedder.embed(batch) @ self.vecs.T
        prompts = []
        for i, text in enumerate(batch):
            nearest = np.argsort(-sims[i])[: self.k][::-1]  # most similar example last
            shots = [(self.texts[j], self.word[self.labels[j]]) for j in nearest]
            prompts.append(self.base.prompt(text, shots))
        return self.base.predict_prompts(prompts)


class HeadClassifier:
    """Embeddings + logistic regression, saved as plain arrays (no pickle)."""

    def __init__(
        self, embedder: Embedder, labels: Sequence[str], coef: np.ndarray, intercept: np.ndarray
    ) -> None:
        self.embedder = embedder
        self.labels = tuple(labels)
        self.coef, self.intercept = coef, intercept

    @classmethod
    def fit(
        cls,
        embedder: Embedder,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        c: float = 4.0,
        progress: Callable[[int], None] | None = None,
    ) -> HeadClassifier:
        """Embed the texts and fit a multinomial logistic regression."""
        from sklearn.linear_model import LogisticRegression

        batch = check_texts(texts)
        classes = sorted(set(labels))
        check_labels(classes)
        x = embed_all(embedder, batch, progress)
        clf = LogisticRegression(C=c, max_iter=2000)
        clf.fit(x, list(labels))
        return cls(embedder, [str(v) for v in clf.classes_], clf.coef_, clf.intercept_)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Same formula as scikit-learn's LogisticRegression.predict_proba."""
        z = x @ self.coef.T + self.intercept
        if self.coef.shape[0] == 1:  # binary: one decision function
            p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return np.stack([1 - p1, p1], axis=1)
        return softmax(z)

    def predict(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> list[Prediction]:
        x = embed_all(self.embedder, check_texts(texts), progress)
        return predictions(self.labels, self.predict_proba(x))

    def save(self, path: str | Path) -> Path:
        """Write `<path>` (JSON: labels, embedder, weights); returns the path."""
        from slmkit.catalog.store import atomic_writer

        path = Path(path)
        data = {
            "format": HEAD_FORMAT,
            "embedder": self.embedder.name,
            "labels": list(self.labels),
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
        }
        with atomic_writer(path) as f:
            f.write(json.dumps(data).encode())
        return path

    @classmethod
    def load(cls, path: str | Path, embedder_loader: Callable[[str], Any]) -> HeadClassifier:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read classifier head {path}: {e}") from e
        if not isinstance(data, dict) or data.get("format") != HEAD_FORMAT:
            raise InputError(f"{path} is not a slmkit classifier head")
        return cls(
            embedder_loader(data["embedder"]),
            data["labels"],
            np.asarray(data["coef"]),
            np.asarray(data["intercept"]),
        )


def embed_all(
    embedder: Embedder,
    texts: list[str],
    progress: Callable[[int], None] | None = None,
    chunk: int = 256,
) -> np.ndarray:
    """Embed in chunks so a progress bar can advance."""
    parts = []
    for start in range(0, len(texts), chunk):
        part = texts[start : start + chunk]
        parts.append(np.asarray(embedder.embed(part)))
        if progress:
            progress(len(part))
    return np.concatenate(parts)


Method = Literal["zeroshot", "zeroshot-uncalibrated", "fewshot", "head"]
METHODS: tuple[str, ...] = ("zeroshot", "zeroshot-uncalibrated", "fewshot", "head")


class Classifier(Protocol):
    """What every classifier offers: one Prediction per text."""

    def predict(self, texts: Sequence[str]) -> list[Prediction]: ...


def make_classifier(
    method: str,
    *,
    labels: Sequence[str] | None = None,
    model: Model | None = None,
    head: str | Path | None = None,
    examples: tuple[Sequence[str], Sequence[str]] | None = None,
    embedder: str | Embedder = "minilm-int8",
    instruction: str = "Classify the text.",
    template: str | None = None,
    k: int = 4,
) -> Classifier:
    """The one place a classifier is built from a method name (the CLI, `slm eval` and the
    server all call it). `embedder` is a name for load_embedder or an embedder object."""
    from slmkit.tasks.embed import load_embedder

    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    emb = (lambda: load_embedder(embedder)) if isinstance(embedder, str) else (lambda: embedder)
    if method == "head":
        if head is None:
            raise InputError("method head needs a head file (from `slm train-classifier`)")
        return HeadClassifier.load(head, load_embedder)
    if not labels:
        raise InputError("zero-/few-shot needs labels")
    if model is None:
        raise InputError(f"method {method} needs a model")
    base = LikelihoodClassifier(
        model,
        labels,
        instruction=instruction,
        template=template,
        calibrate=method != "zeroshot-uncalibrated",
    )
    if method != "fewshot":
        return base
    if examples is None:
        raise InputError("few-shot needs labelled examples (texts and label_text)")
    return FewShotClassifier(base, examples[0], examples[1], emb(), k=k)
