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
# QMSum's per-meeting files at that commit (data/ALL/...), with their sha256
_QMSUM_FILES = """
val/Bed002.json bb2892b5df74d283936a75368acf843b17c24256a7d3286e6e6599566ce87672
val/Bed010.json 7af05a58b32a7dcb70172d017c4b9a17467609e41fd36c48060cb376106c4eee
val/Bed015.json d0fad52701e7911a14c07c02dc274c2103e91935d471b3156bafd2546edde4c1
val/Bmr005.json bd6ebed66ccccd5fdebeee4cbbc0558a2025dbb2ac24dba270cae95982d700b8
val/Bmr012.json 97312e8352dec5b8ede22fc9abac7b25d8c566d504ba719471bc63e0347fc34f
val/Bmr026.json a560d5bf6742426a067ff72354b97bf4c99c614404c4b96cf2e656a28c08c36a
val/Bro005.json cc3c48e6f2ef2f70627111f2a060db92362c329aa7e295c61fe8ce3fcc70e790
val/Bro011.json e28964b656b126553ed1e2b0dca59f2f0b6f8a2e71d0060cc6e0521ff522218d
val/Bro022.json 552de3e22fcc0e35c22e3494c5ecaac5ea7e2cab78fd97a86fc804ee90861b7b
val/ES2006a.json 19592a4f5f6306a7f22401112c3973bbd991b739cd1ed9a3ec2084ca8801e8ec
val/ES2006b.json fe7c362c3e2f6e2ca3a7ddcc1b36db4f247e2587636abe514b0f16f8b7b8991a
val/ES2006c.json bf485a60f7aa0088010d06d570bc88bb01feb944353f72316e1aca7addb024eb
val/ES2006d.json 628aadbf28ab0b1f2cba5c6d6c62b0710fd1a2279f8750ea33c268fb73b90c14
val/ES2009a.json d282566d900fd268fdfa5045ae198226c512a329b6f2c5b34a8ceae4dae38f12
val/ES2009b.json fcf8fb6a650cce9d8de176e2370d1928abf53f8a2a710b3b2263f200946c69fb
val/ES2009c.json 9180b057b98d8a258109e5ee98648d5a7d7d533dbfc4da934514f2ccc2729dc9
val/ES2009d.json d8e14aec4c281896e7ca49557f0999ea48635c5f93088cdde90c02213c26e2d2
val/IS1006a.json 1a44ea297c0395b200efe2f776b868167dc7906d1e2f2eab2cee782b1b5c1870
val/IS1006b.json e4f558cd4e684b3e273211cb40959835666213bb67d8afef77fbce0fed64ad0f
val/IS1006c.json 5be419c12fb87f4c6a8a5cd9576b992d4e0482e4bd730197d591e2a4b1a4fb94
val/IS1006d.json 161fd1bd62aa7aad2ceedd16da465431f3f54fed101c11a25c6f030e5d574aac
val/TS3009a.json 91a06e9e431040b00f78d70680f73174d3cb2df719b178845f3494ae62d837fe
val/TS3009b.json c8c461d840cd54fba9e5f764585af189279cef60ed707a4335c2ce8b16933843
val/TS3009c.json 7c3b99d8a9ce71bb351d9ea40c2d53ff668fb89558f6c9006f57e178fb73adcd
val/TS3009d.json 4053e0011d801b7b7735c61570f574c1d4c661fdc461f068da7d8e8f16824830
val/TS3010a.json 586681bbe916a7038707b945cd4a6e46e5d7338a77b5cbd56b7fb8f77b52d302
val/TS3010b.json 9a846509abc0d92e52503f21db422da014a8e8da4aca98487f76601cb6e6a9fb
val/TS3010c.json 85a43ab88dd7c7f11181660c48a3513223d3f8dafe49af790d3b3101a35f3029
val/TS3010d.json 0227c7c85c04a5ccd1cb2cafd41d9eae6b9bb0de615b505bcb0a96d60d730e9d
val/covid_2.json 11804fd7aa27b7d76ff1ed0bc799e265ca1d6e2e5429f196d7237f9ac9a35e4c
val/covid_6.json 2dcf98d1fa109a39ecede6983f5c635534c8153c36a2109f9bd43a18fd1fcf3f
val/education_0.json fbffeafdb4b594a75b1dceff28fe1c029d901ebf06c559cde14145845178c1a4
val/education_10.json 3adcef514b1a97d8bde89344a63d2715499e02e59145ef178c53b94e736eca70
val/education_18.json 06b43aa15e878f58b9f42cb659e635722ceeb0834ee32598cf623cd7226f7807
val/education_22.json 429db583970f51ee8c81557aeefb9f83b844800f0b4f0644cb1120c7bea9bcc0
test/Bed003.json 959b0a710628f786f64c35f1462717f234b03ba34f2e170d3bb13be72f3321f8
test/Bed008.json d05c8b6dbc35244a277147f85778bb02b7ad7eae0f03700ac68d084d296fc84a
test/Bed016.json c8f8cb9ad047361dd3f364e28aa44d150d2b9c730434ef88c0dece6ce34a9756
test/Bmr006.json 0b1fb051ad319a0ff006970b86336425fc2ed987a3616bd07cf9a48c53bbfa69
test/Bmr014.json d0e8d99b8a2568beaaedae741c4ac5453a6bcb22f23386e50659690dcc916bd6
test/Bmr023.json 5fa1ac45bd19972a64f21d7cba3ef1afb73ad7b38c26a5c1ff03139bf0971cb5
test/Bro004.json f8a8c92c0574f4d4ed4596b68d94ca236f2ae09bccb283ead925ef3512f64890
test/Bro019.json b2f4aee0ced969ee2c3a9d4dc71d24dce227e9513aca8acc539ae3cfda5a2cec
test/Bro027.json ba636d2f05985723663e72aa6c8c85bf9f1e8e50fa03790146dbbebc2d1419af
test/ES2004a.json 911e56db0d8482f1e730bae0a8fcf0ab0095c94abb000ba0516e975fa6e48b31
test/ES2004b.json 5ed3c79e6784827652a2cdfaf2922c377aa386d8501b4a2039e51fb00a4d294d
test/ES2004c.json 31815196407111dba01f8b8cbfa31cd07fb8a682e4005bae7846893ab93a6778
test/ES2004d.json d3f7235ffcf577909726ebbd95e87b1f5bef62a7a984911abf9d9cb0825fd752
test/ES2011a.json 1e2ae7b9d3a7e9cf2e6c1dcd62de5c4f4050d7366c5e6a7605bfaf5d790ff35c
test/ES2011b.json aa9c1ac75b1092e1bdb22576268831b0321147375de563be51cace51a67636f1
test/ES2011c.json 0f76f60f6eeae152da331d498d384dbaf9b9b3e2d5aa705abb0ddf4ab742328a
test/ES2011d.json a5882a985364529b7c82836f0368af46d738c7bf5a830485614d61c077525519
test/IS1003a.json 94241cde8ed5e0eda79881f1df343baf331119b540b846436d1d5a16ebf0d4ff
test/IS1003b.json 1aa2ac4526602ec1ffd25e2624dd5bf72c05cd2dc526ca3f756fb2b6cee8cc0c
test/IS1003c.json 1a3c18ed141f731763614eb93b616daef627516c9584cca5c4e18acdc494e558
test/IS1003d.json c99895f2a1fee6f5602329316047e7dc7448891f697606d65313ceb83570a80d
test/TS3004a.json dcd543b2ebe895069a33cd3b1e0bf3e7072010bc32e34c31798d43a9a4616c10
test/TS3004b.json 5c1e39e5e52154f41e54280ec27fde5dbe945d89d66d4e2ef14d6f6a4712d561
test/TS3004c.json 4000d632f2d2956956c5ba8e5448bcc829781b33e4ab3f89f1db29dc524a384c
test/TS3004d.json 2fda8b12aa354453cd71345549079787a34c5eb3a1e617cbddcc3cee5c167113
test/TS3011a.json d9ec9c44f157ee9f3d3960394e4046c5014cfde8e5ceb1a1ad64ab8ba3c870af
test/TS3011b.json a9893799ef415b28b73d74412375774543003f6778c3c169835a7c8517ddc7c5
test/TS3011c.json c08cb7f63bbcae707ce9a47e6f0534b68e6c889228e703f108024ce56e90c00c
test/TS3011d.json b555b5693e29d34336d75d3afb7eecaa0c155502bc8b1071751ac34d16bc6403
test/covid_4.json f0cff5da0694b867630dd180263b09f44a76b49088f96e9660a95bfb6ba0ed1b
test/covid_9.json 270347ed6d3fab99e4981a04997244c4b617c1ba26cbbfe12a0b34998d7ea8de
test/education_13.json ee8b8b44e0d438c4280a15165148a9c52e3e278390af3a72aef1feb8e776dc60
test/education_17.json a25f5bf677a5328f1f1628f45c0a4290b5735e434899d3e7a28aaa60b3cc2a90
test/education_4.json dbea7eb2a18e4616922ab1a405cf846c0e9e11f3272ec6eb366a9f93c2b52e2f
test/education_9.json 2afbf4403292953ef9c380ceba7811930b4e2bc0e442fc0ba193ed2ac5f74c64
"""
_QMSUM_VAL = tuple(
    Upstream(*_QMSUM, f"data/ALL/{path}", sha)
    for path, sha in (ln.split() for ln in _QMSUM_FILES.strip().splitlines())
    if path.startswith("val/")
)
_QMSUM_TEST = tuple(
    Upstream(*_QMSUM, f"data/ALL/{path}", sha)
    for path, sha in (ln.split() for ln in _QMSUM_FILES.strip().splitlines())
    if path.startswith("test/")
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
        upstream=_QMSUM_VAL + _QMSUM_TEST,
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
        upstream=_QMSUM_VAL,
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
