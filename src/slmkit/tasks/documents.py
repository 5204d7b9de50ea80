"""A user's documents for a knowledge base: text, Markdown, HTML (the standard library's
parser), PDF (pypdf) and JSONL (a text field) read as text; then chunked by structure
(Markdown headings start a chunk, paragraphs are kept whole where they fit) and by the
embedder's tokens with overlap where a paragraph is too long. Each chunk keeps its file and
its character span in the file's text, so an answer can cite exactly where it read."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from slmkit.errors import DataError

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".text"}
HTML_SUFFIXES = {".html", ".htm"}
SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | {".pdf", ".jsonl"}
MAX_FILE_BYTES = 64 * 2**20  # larger files are skipped (named, counted), not read

# token spans of a text: (start, end) character offsets, one per token
Spans = Callable[[str], list[tuple[int, int]]]


@dataclass(frozen=True)
class Chunk:
    path: str  # the file, as stored in the knowledge base (absolute)
    start: int  # character span in the file's text (`read_document`)
    end: int
    text: str


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


def find_files(inputs: Iterable[str | Path]) -> tuple[list[Path], list[Skipped]]:
    """Files under the inputs (folders walked in name order, hidden ones left out) with a
    supported suffix; everything else is named with the reason it was skipped."""
    found: list[Path] = []
    skipped: list[Skipped] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            files = sorted(
                f
                for f in p.rglob("*")
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
        elif p.is_file():
            files = [p]
        else:
            skipped.append(Skipped(str(p), "no such file or folder"))
            continue
        for f in files:
            if f.suffix.lower() in SUFFIXES:
                found.append(f.resolve())
            else:
                skipped.append(Skipped(str(f), f"unsupported type {f.suffix or '(none)'}"))
    unique = list(dict.fromkeys(found))
    return unique, skipped


class _HTMLText(HTMLParser):
    """Visible text of an HTML page: script/style dropped, block elements on new lines."""

    BLOCKS = {"p", "div", "br", "li", "tr", "section", "article", "h1", "h2", "h3", "h4"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "noscript"):
            self.skip += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n\n" + ("# " if tag in ("h1", "h2", "h3", "h4") else ""))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "noscript") and self.skip:
            self.skip -= 1

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def _text_file(path: Path) -> str:
    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        raise DataError("binary file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte {e.start})") from None


def _pdf(path: Path) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        return "\n\n".join((page.extract_text() or "") for page in reader.pages)
    except (PdfReadError, ValueError, KeyError, OSError) as e:
        raise DataError(f"unreadable PDF ({e})") from None


def _jsonl(path: Path, field: str) -> str:
    texts = []
    for lineno, line in enumerate(_text_file(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"line {lineno}: broken JSON") from None
        value = row.get(field) if isinstance(row, dict) else None
        if isinstance(value, str) and value.strip():
            texts.append(value.strip())
    return "\n\n".join(texts)


def read_document(path: Path, *, text_field: str = "text") -> str:
    """A file's text; DataError with the reason for a file that cannot be used (binary, not
    UTF-8, an unreadable or textless PDF, too large, empty)."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise DataError(f"unreadable ({e.strerror})") from None
    if size > MAX_FILE_BYTES:
        raise DataError(f"{size / 2**20:.0f} MB, over the {MAX_FILE_BYTES // 2**20} MB limit")
    suffix = path.suffix.lower()
    try:
        if suffix == ".pdf":
            text = _pdf(path)
        elif suffix == ".jsonl":
            text = _jsonl(path, text_field)
        elif suffix in HTML_SUFFIXES:
            parser = _HTMLText()
            parser.feed(_text_file(path))
            text = "".join(parser.parts)
        else:
            text = _text_file(path)
    except OSError as e:
        raise DataError(f"unreadable ({e.strerror})") from None
    if not text.strip():
        raise DataError("no text" + (" (a scanned PDF?)" if suffix == ".pdf" else ""))
    return text


_BLOCK = re.compile(r"\S(?:.*?)(?=\n\s*\n|\n(?=#{1,6} )|\Z)", re.S)


def blocks(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, is_heading) of each paragraph: text between blank lines, a Markdown
    heading line always starting its own block."""
    return [(m.start(), m.end(), text.startswith("#", m.start())) for m in _BLOCK.finditer(text)]


def _units(text: str, spans: Spans, max_tokens: int) -> Iterator[tuple[int, int, bool, list]]:
    """(start, end, is_heading, token spans) of each paragraph; a paragraph too long for one
    chunk is given line by line (transcripts, lists and logs break at their lines)."""
    for start, end, heading in blocks(text):
        tokens = spans(text[start:end])
        if len(tokens) <= max_tokens:
            yield start, end, heading, tokens
            continue
        for m in _LINE.finditer(text, start, end):
            yield m.start(), m.end(), heading and m.start() == start, spans(m.group())


_LINE = re.compile(r"[^\n]*\S[^\n]*")


def chunk_text(
    path: str, text: str, spans: Spans, *, max_tokens: int = 200, overlap: int = 32
) -> list[Chunk]:
    """Chunks of at most `max_tokens` tokens: paragraphs (or a long paragraph's lines) joined
    while they fit, a heading starting a new chunk; a line longer than a chunk is cut into
    windows overlapping by `overlap` tokens."""
    if not 0 <= overlap < max_tokens:
        raise DataError(f"overlap must be below max_tokens ({overlap} >= {max_tokens})")
    out: list[Chunk] = []
    cur: tuple[int, int] | None = None  # span of the chunk being filled
    cur_tokens = 0

    def flush() -> None:
        nonlocal cur, cur_tokens
        if cur is not None:
            out.append(Chunk(path, cur[0], cur[1], text[cur[0] : cur[1]]))
        cur, cur_tokens = None, 0

    for start, end, heading, tokens in _units(text, spans, max_tokens):
        n = len(tokens)
        if heading or (cur is not None and cur_tokens + n > max_tokens):
            flush()
        if n <= max_tokens:
            cur = (cur[0] if cur else start, end)
            cur_tokens += n
            continue
        flush()
        step = max_tokens - overlap
        for i in range(0, n - overlap, step):
            window = tokens[i : i + max_tokens]
            a, b = start + window[0][0], start + window[-1][1]
            out.append(Chunk(path, a, b, text[a:b]))
    flush()
    return out
