"""The data catalog: the built-in datasets the tasks start from, pinned like models.

Each entry lists the files slmkit reads (name, split, rows, bytes, sha256), where they come
from upstream (repository, commit, path and, where recorded, the upstream file's sha256), the
license as the upstream states it, the citation, and how the splits were made. The files are
installed into the store by `slm data pull` (catalog/data_store.py) from any source whose
bytes hash to these pins.
"""

from __future__ import annotations

from dataclasses import dataclass

from slmkit.errors import DataError


@dataclass(frozen=True)
class DataFile:
    name: str
    split: str  # train / test / validation / labels / documents
    rows: int
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class Upstream:
    """One upstream file the dataset was made from (GitHub repository at a pinned commit)."""

    repo: str
    commit: str
    path: str
    sha256: str | None = None


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    title: str
    tasks: tuple[str, ...]  # built-in task names that read it
    files: tuple[DataFile, ...]
    license: str
    license_note: str
    citation: str
    splits: str  # how the splits were made
    upstream: tuple[Upstream, ...]
    # Fetched as-is from upstream (the stored file is the upstream file, byte for byte): the
    # one case a network pull needs no conversion. Other datasets were converted (schema,
    # seeded splits, filtering) and install from a local copy (`--from DIR`).
    verbatim: bool = False

    @property
    def size_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)

    def file(self, split_or_name: str) -> DataFile:
        for f in self.files:
            if split_or_name in (f.name, f.split):
                return f
        raise DataError(f"dataset {self.name} has no file or split {split_or_name!r}")


_QMSUM = ("Yale-LILY/QMSum", "83d7768c1f2b4dfeb091385d3dc7e239b8e5bb7e")
_QMSUM_CITE = (
    "Zhong et al., QMSum: A New Benchmark for Query-based Multi-domain Meeting "
    "Summarization, NAACL 2021 (arXiv:2104.05938)"
)
_QMSUM_LICENSE = (
    "MIT (repository LICENSE, (c) 2021 Yale-LILY); transcripts come from the AMI, ICSI and "
    "parliamentary corpora, whose own terms were not checked"
)

DATASETS: tuple[DatasetEntry, ...] = (
    DatasetEntry(
        name="sst2",
        title="GLUE SST-2 binary sentiment (movie review phrases / sentences)",
        tasks=("sst2",),
        files=(
            DataFile(
                "train.jsonl",
                "train",
                67349,
                7835896,
                "552db96fd496613e73b364c3f6d4d95773605fb5d444201814e4f11eec7e4b1d",
            ),
            DataFile(
                "validation.jsonl",
                "test",
                872,
                145382,
                "957adeff6f8c2be25162cfcf6063ae3ef2bff137fcc52ef56b2bdf33fa91d038",
            ),
        ),
        license="unknown",
        license_note="no license file upstream; the HF card stanfordnlp/sst2 says 'unknown': "
        "treat as research-use data from the original SST release",
        citation="Socher et al., EMNLP 2013; Wang et al., GLUE, arXiv:1804.07461",
        splits="GLUE's train and dev files (dev used as test: GLUE's test has no labels); "
        "TSV converted to JSONL, outer whitespace stripped, order kept",
        upstream=(
            Upstream(
                "TaoCesc/binary_cls",
                "6a73b09b39af0efe049622662211f3657c75a15e",
                "data/SST-2/train.tsv",
                "c3c410c1cd1307a8dfcbc51f69086c61fc7d95c0fc353b80009dfe5fb4970172",
            ),
            Upstream(
                "TaoCesc/binary_cls",
                "6a73b09b39af0efe049622662211f3657c75a15e",
                "data/SST-2/dev.tsv",
                "46cc9126f5e3bf1634991d8eeed3a5e8dc81869622444af859729d720c58d815",
            ),
        ),
    ),
    DatasetEntry(
        name="sms_spam",
        title="SMS Spam Collection v.1 (ham / spam)",
        tasks=("sms_spam", "extract_sms"),
        files=(
            DataFile(
                "train.jsonl",
                "train",
                4460,
                618108,
                "4b320bbb31f98f4808580c812da7fa2c806bbebab21d0dcbf41a31b1ba47bcd1",
            ),
            DataFile(
                "test.jsonl",
                "test",
                1114,
                154462,
                "dcedba367785e12057bd86897652d1e3bb1a59d4d0c75d05b2a67ce0d7fbec64",
            ),
        ),
        license="authors' terms",
        license_note="free use with no limitations except: copyright stays with T. A. Almeida "
        "and J. M. Gomez Hidalgo, no warranty, no liability; cite the paper",
        citation="Almeida, Gomez Hidalgo, Yamakami, Contributions to the Study of SMS Spam "
        "Filtering: New Collection and Results, DocEng 2011",
        splits="stratified 80/20, seeded (random.Random(20240601)), whole groups of repeated "
        "messages (normalised text) kept in one split",
        upstream=(
            Upstream(
                "EvilPort2/Spam-Detection",
                "d12b3145850a1731c5be62bb03d5e2f416a81cf7",
                "SMSSpamCollection",
                "edc1f2ca36319ca36c6f80fede2f6ae5f81335289352485f3924df077ec20266",
            ),
        ),
    ),
    DatasetEntry(
        name="banking77",
        title="Banking77 customer-support intents (77 classes)",
        tasks=("banking77",),
        files=(
            DataFile(
                "train.jsonl",
                "train",
                9996,
                1363214,
                "049a831a48a3fb872600919e80f17c2d65dc99ace8516bb4167f51f0e282853d",
            ),
            DataFile(
                "test.jsonl",
                "test",
                3080,
                400912,
                "ab83d47b699f9b2d5af85a3b1ed81a3fa21d673c8d40ed33605e40635a7aa095",
            ),
            DataFile(
                "labels.txt",
                "labels",
                77,
                1649,
                "443626ab44cd4565d3faaf93ef7d74a220b93944bde1f9ab25334dfc21a897e0",
            ),
        ),
        license="CC-BY-4.0",
        license_note="Creative Commons Attribution 4.0 (the repository's LICENSE file)",
        citation="Casanueva et al., Efficient Intent Detection with Dual Sentence Encoders, "
        "NLP4ConvAI @ ACL 2020 (arXiv:2003.04807)",
        splits="upstream train/test; 7 train rows whose text also occurs in test removed",
        upstream=tuple(
            Upstream("PolyAI-LDN/task-specific-datasets", _c, _p, _s)
            for _c, _p, _s in (
                (
                    "57ec275d8078af65b7731c2a98be812d844a6d6b",
                    "banking_data/train.csv",
                    "b06e26ac675513959a63135f11b94ea7786ed02da65db93a5650d8838cbc664b",
                ),
                (
                    "57ec275d8078af65b7731c2a98be812d844a6d6b",
                    "banking_data/test.csv",
                    "d12d6e3bc4c3103966ae786dc435913c0c563dfa328f5a3646d0e62cfeeb474d",
                ),
                (
                    "57ec275d8078af65b7731c2a98be812d844a6d6b",
                    "banking_data/categories.json",
                    "53261da888122daf2d120d925458631d9619e15d82e56052e7a42e535ce32b63",
                ),
            )
        ),
    ),
    DatasetEntry(
        name="cnn_dailymail",
        title="CNN/DailyMail 3.0.0, first 1,000 validation articles with highlights",
        tasks=("cnn_dailymail",),
        files=(
            DataFile(
                "validation_1000.jsonl",
                "test",
                1000,
                4150553,
                "5df80e9054619cb4571184de26ce6c305ddd23e73f53b89542719d458d061b70",
            ),
        ),
        license="Apache-2.0",
        license_note="the HF card cnn_dailymail says Apache-2.0; the articles stay (c) CNN / "
        "Daily Mail: research and evaluation use",
        citation="Hermann et al., NeurIPS 2015; See, Liu, Manning, ACL 2017",
        splits="validation[:1000] of the HF 3.0.0 release, order kept, no filtering",
        upstream=(
            Upstream(
                "hillaryke/rag-optimization-cnn-dailymail",
                "03d05440507618d6bec073b46543696e5a47df20",
                "data/collection/cnn_dailymail_validation_subset.csv",
                "fa0a78975e902c7e5bd59506bc5508f848add73bff87fef68670e934a742de67",
            ),
        ),
    ),
    DatasetEntry(
        name="qmsum",
        title="QMSum whole-meeting summaries (70 long transcripts)",
        tasks=("qmsum",),
        files=(
            DataFile(
                "general_summaries.jsonl",
                "test",
                70,
                4029248,
                "da122f40119c7b4920c3ac1933c31a145f29a9a09ed78cc62d0f2a30b3bd95c6",
            ),
        ),
        license="MIT",
        license_note=_QMSUM_LICENSE,
        citation=_QMSUM_CITE,
        splits="the 35 validation and 35 test meetings (field `split`), first general query each",
        upstream=(Upstream(*_QMSUM, "data/ALL/val/"), Upstream(*_QMSUM, "data/ALL/test/")),
    ),
    DatasetEntry(
        name="qmsum_qa",
        title="QMSum query-focused questions over 35 meetings (+30 unanswerable)",
        tasks=(),
        files=(
            DataFile(
                "dev.jsonl",
                "test",
                267,
                1410735,
                "3587184f6194815ff5b2e8d2753e538e5ef1f62cf28439ec7abb3e3c51f0a93e",
            ),
            DataFile(
                "dev_documents.jsonl",
                "documents",
                35,
                2116450,
                "15048a2ce42a06277ff822e820729ee10fbf0f386736f989c3472427e2d1f8f5",
            ),
        ),
        license="MIT",
        license_note=_QMSUM_LICENSE,
        citation=_QMSUM_CITE,
        splits="the validation meetings' specific queries; 30 unanswerable rows pair a query "
        "with a meeting of another domain (random.Random(0))",
        upstream=(Upstream(*_QMSUM, "data/ALL/val/"),),
    ),
    DatasetEntry(
        name="arc_easy_dev",
        title="AI2 ARC-Easy development set (570 multiple-choice questions)",
        tasks=("mc",),
        files=(
            DataFile(
                "dev.jsonl",
                "test",
                570,
                214423,
                "f4364b808a68df6bf500ce1070fb0105d40cacd2391c210deb00ff83ba75d1f4",
            ),
        ),
        license="CC-BY-SA-4.0",
        license_note="Creative Commons Attribution-ShareAlike 4.0 (AI2 ARC page)",
        citation="Clark et al., Think you have Solved Question Answering? Try ARC, "
        "arXiv:1803.05457 (2018)",
        splits="AI2's ARC-V1-Feb2018 Easy dev file, byte for byte",
        upstream=(
            Upstream(
                "RazvanDu/TemporalRNNs",
                "979116de476dc3b1d98198707a2da2caa64c83db",
                "ARC-Easy/ARC-Easy-Dev.jsonl",
                "f4364b808a68df6bf500ce1070fb0105d40cacd2391c210deb00ff83ba75d1f4",
            ),
        ),
        verbatim=True,
    ),
)

BY_NAME = {d.name: d for d in DATASETS}
# built-in task name -> the dataset it reads
TASK_DATASET = {t: d.name for d in DATASETS for t in d.tasks}


def dataset(name: str) -> DatasetEntry:
    """The catalog entry, or DataError listing the known names."""
    try:
        return BY_NAME[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, BY_NAME, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise DataError(
            f"unknown dataset {name!r}{hint}; known: {', '.join(BY_NAME)} (`slm data list`)"
        ) from None
