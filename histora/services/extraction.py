"""Text extraction from uploaded PDF, DOCX, TXT and Markdown files.

Pure and synchronous (callers run it in a worker thread). The type is decided by
the bytes, never by the name or the Content-Type; every limit is checked before
the work it bounds; and every failure of the parsing libraries becomes one of
``histora.errors``' file errors with a public message that says what to do.
Library exception text is kept in the error's ``detail``, never shown.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

from docx import Document as open_docx
from docx.table import Table
from docx.text.paragraph import Paragraph
from pypdf import PasswordType, PdfReader, apply_configuration, get_configuration

from histora.errors import (
    FileTooLargeError,
    HistoraError,
    UnreadableFileError,
    UnsupportedFileError,
)
from histora.models.documents import DocumentKind
from histora.services.text_cleanup import HyphenationVocabulary, clean_text, decode_text
from histora.settings import Settings

PDF_SIGNATURE = b"%PDF-"
PDF_SIGNATURE_WINDOW = 1024  # readers accept junk before the header; so do we
ZIP_SIGNATURE = b"PK\x03\x04"
DOCX_REQUIRED_PARTS = frozenset({"word/document.xml", "[Content_Types].xml"})
MAX_ZIP_MEMBERS = 2000  # a real DOCX has tens of parts, a few hundred with many images
# Compression ratios of small members are noise (Word XML compresses 5-40x); only
# members and archives past this size are held to the ratio limit.
RATIO_CHECK_FLOOR = 64 * 1024
# A PDF averaging fewer letters/digits per page than this has no real text layer
# (a scan with page numbers or a watermark is still a scan).
MIN_ALNUM_PER_PDF_PAGE = 16
# pypdf lets one stream decode to 75 MB (a 200 KB PDF peaked at 150 MB, measured); a page of
# text needs well under 1 MB, so decoding is capped much lower.
PDF_MAX_DECODED_STREAM = 8 * 1024 * 1024
_PDF_LIMITS = {
    name: PDF_MAX_DECODED_STREAM
    for name in (
        "zlib_maximum_output_length",
        "lzw_maximum_output_length",
        "run_length_maximum_output_length",
        "brotli_maximum_output_length",
        "jbig2_maximum_output_length",
        "array_based_stream_maximum_output_length",
        "image_maximum_buffer_size",
    )
}
_MARKDOWN_SUFFIXES = (".md", ".markdown")
_MD_HEADING = re.compile(r"^ {0,3}#{1,6} +\S", re.MULTILINE)
_MD_OTHER = re.compile(
    r"^ {0,3}(?:[-*+] +\S|\d{1,3}[.)] +\S|```|~~~|> )|\[[^\]\n]+\]\([^)\s]+\)|\*\*\S[^*\n]*\*\*",
    re.MULTILINE,
)
_MD_SNIFF_CHARS = 200_000

NO_TEXT_MESSAGE = "This file contains no readable text."
DAMAGED_MESSAGE = "Histora could not read this {kind}. It may be damaged or incomplete."
ENCRYPTED_PDF_MESSAGE = "This PDF is password-protected. Remove the password and upload it again."


@dataclass(frozen=True)
class ExtractionLimits:
    max_bytes: int
    max_pages: int
    max_chars: int
    max_uncompressed_bytes: int
    max_compression_ratio: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ExtractionLimits:
        return cls(
            max_bytes=settings.upload_max_bytes,
            max_pages=settings.upload_max_pages,
            max_chars=settings.upload_max_chars,
            max_uncompressed_bytes=settings.upload_max_uncompressed_bytes,
            max_compression_ratio=settings.upload_max_compression_ratio,
        )


@dataclass(frozen=True)
class PageText:
    number: int | None  # 1-based page for PDFs; None for DOCX/TXT/MD
    text: str  # cleaned text


@dataclass(frozen=True)
class ExtractedDocument:
    kind: DocumentKind
    pages: list[PageText]  # PDFs: one per page, in order, empty text for blank pages

    @property
    def page_count(self) -> int | None:
        return len(self.pages) if self.kind is DocumentKind.PDF else None


# -- type detection ---------------------------------------------------------------------


def detect_kind(data: bytes, *, filename: str) -> DocumentKind:
    """The document kind by content; the name only chooses between TXT and Markdown.

    A text file named ``x.pdf`` is TXT (content wins, consistently). Raises
    UnsupportedFileError for anything else, UnreadableFileError for a damaged DOCX.
    """
    kind, _ = _sniff(data, filename=filename)
    return kind


def _sniff(data: bytes, *, filename: str) -> tuple[DocumentKind, str | None]:
    """Kind plus, for text kinds, the decoded text (so it is decoded once)."""
    if PDF_SIGNATURE in data[:PDF_SIGNATURE_WINDOW]:
        return DocumentKind.PDF, None
    if data.startswith(ZIP_SIGNATURE):
        _check_docx_names(data)
        return DocumentKind.DOCX, None
    text = decode_text(data)
    if text is None:
        raise UnsupportedFileError(detail="binary content without a known signature")
    if filename.lower().endswith(_MARKDOWN_SUFFIXES) or looks_like_markdown(text):
        return DocumentKind.MARKDOWN, text
    return DocumentKind.TXT, text


def _check_docx_names(data: bytes) -> None:
    # Each central-directory entry starts with this signature: an upper bound on the
    # member count, taken before ZipFile builds one object per member.
    if data.count(b"PK\x01\x02") > MAX_ZIP_MEMBERS:
        raise UnreadableFileError(
            "This archive has too many parts to be a document; it was refused.",
            detail="zip with too many members",
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        if b"word/" in data:
            raise _damaged("DOCX file", exc) from exc
        raise UnsupportedFileError(detail=f"unreadable zip: {exc!r}") from exc
    if "word/document.xml" not in names:
        raise UnsupportedFileError(detail="a zip archive that is not a Word document")
    if not names >= DOCX_REQUIRED_PARTS:
        # A Word file missing a required part is damaged, not of another type.
        raise _damaged("DOCX file", None, detail="missing [Content_Types].xml")


def looks_like_markdown(text: str) -> bool:
    """Clearly Markdown: two ATX headings, or one plus another Markdown construct."""
    sample = text[:_MD_SNIFF_CHARS]
    headings = len(_MD_HEADING.findall(sample))
    return headings >= 2 or (headings == 1 and _MD_OTHER.search(sample) is not None)


# -- extraction -------------------------------------------------------------------------


def extract(data: bytes, *, filename: str, limits: ExtractionLimits) -> ExtractedDocument:
    """Detect the kind, check the limits, and extract cleaned text.

    Raises only FileTooLargeError, UnsupportedFileError and UnreadableFileError.
    """
    if len(data) > limits.max_bytes:
        size, limit = _format_size(len(data)), _format_size(limits.max_bytes)
        raise FileTooLargeError(
            f"This file is {size}; the limit is {limit}."
            if size != limit
            else f"This file is just over the {limit} limit."
        )
    if not data or data.isspace():
        raise UnreadableFileError("This file is empty.")
    kind: DocumentKind | None = None
    try:
        kind, text = _sniff(data, filename=filename)
        if kind is DocumentKind.PDF:
            document = _extract_pdf(data, limits)
        elif kind is DocumentKind.DOCX:
            document = _extract_docx(data, limits)
        else:
            document = _extract_plain(kind, text, limits)
    except HistoraError:
        raise
    except Exception as exc:  # any parser failure (RecursionError too) means "damaged"
        raise _damaged(_KIND_LABELS.get(kind, "file"), exc) from exc
    if not any(page.text for page in document.pages):
        raise UnreadableFileError(NO_TEXT_MESSAGE)
    return document


def _extract_plain(
    kind: DocumentKind, text: str | None, limits: ExtractionLimits
) -> ExtractedDocument:
    assert text is not None  # _sniff decoded it
    _check_chars(len(text), limits)  # cleanup barely shrinks text: refuse before the work
    cleaned = clean_text(text, markdown=kind is DocumentKind.MARKDOWN)
    return ExtractedDocument(kind=kind, pages=[PageText(number=None, text=cleaned)])


def _extract_pdf(data: bytes, limits: ExtractionLimits) -> ExtractedDocument:
    configuration = get_configuration().with_overwrites(**_PDF_LIMITS)
    with apply_configuration(configuration):  # a ContextVar: this thread/task only
        return _read_pdf(data, limits)


def _read_pdf(data: bytes, limits: ExtractionLimits) -> ExtractedDocument:
    reader = _open_pdf(data)
    page_count = len(reader.pages)
    if page_count > limits.max_pages:
        raise FileTooLargeError(
            f"This PDF has {page_count:,} pages; the limit is {limits.max_pages:,}."
        )
    raw_pages: list[str] = []
    failures: list[str] = []
    total = 0
    for page in reader.pages:
        try:
            raw = page.extract_text() or ""
        except Exception as exc:  # noqa: BLE001 - one broken page must not lose the others
            failures.append(repr(exc))
            raw = ""
        total += len(raw)
        _check_chars(total, limits)
        raw_pages.append(raw)
    alnum = sum(sum(ch.isalnum() for ch in raw) for raw in raw_pages)
    if alnum < MIN_ALNUM_PER_PDF_PAGE * max(page_count, 1):
        if failures:
            raise _damaged("PDF file", None, detail=f"{len(failures)} pages failed: {failures[0]}")
        raise UnreadableFileError(
            "This PDF has no text layer (it looks scanned). "
            "Histora cannot read scanned documents yet (no OCR)."
        )
    vocabulary = HyphenationVocabulary("\n".join(raw_pages))  # shared across pages
    pages = [
        PageText(number=number, text=clean_text(raw, vocabulary=vocabulary))
        for number, raw in enumerate(raw_pages, start=1)
    ]
    return ExtractedDocument(kind=DocumentKind.PDF, pages=pages)


def _open_pdf(data: bytes) -> PdfReader:
    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        # An empty user password opens many "protected" PDFs; anything else we cannot.
        try:
            opened = reader.decrypt("") != PasswordType.NOT_DECRYPTED
        except Exception as exc:  # an unsupported or broken encryption dictionary
            raise UnreadableFileError(ENCRYPTED_PDF_MESSAGE, detail=f"decrypt: {exc!r}") from exc
        if not opened:
            raise UnreadableFileError(ENCRYPTED_PDF_MESSAGE)
    return reader


def _extract_docx(data: bytes, limits: ExtractionLimits) -> ExtractedDocument:
    _check_zip_expansion(data, limits)
    document = open_docx(io.BytesIO(data))
    blocks: list[str] = []
    total = 0
    for block in _docx_blocks(document.iter_inner_content()):
        total += len(block) + 2
        _check_chars(total, limits)
        blocks.append(block)
    # Word paragraphs are real paragraphs: separate them, never join their lines.
    text = clean_text("\n\n".join(blocks), join_lines=False)
    return ExtractedDocument(kind=DocumentKind.DOCX, pages=[PageText(number=None, text=text)])


def _docx_blocks(items: Iterator[Paragraph | Table]) -> Iterator[str]:
    """Paragraphs (headings included) and tables, in document order."""
    for item in items:
        if isinstance(item, Paragraph):
            yield item.text
        else:
            yield "\n".join(_table_rows(item))


def _table_rows(table: Table) -> Iterator[str]:
    for row in table.rows:
        cells: list[str] = []
        seen: set[int] = set()
        for cell in row.cells:
            if id(cell._tc) in seen:  # a merged cell is returned once per grid column
                continue
            seen.add(id(cell._tc))
            parts = _docx_blocks(cell.iter_inner_content())
            cells.append(" ".join(" ".join(parts).split()))
        if any(cells):
            yield " | ".join(cells)


def _check_zip_expansion(data: bytes, limits: ExtractionLimits) -> None:
    """Refuse zip bombs by the declared sizes, before anything is inflated.

    Declared sizes are enough: zipfile never inflates a member past its declared
    size (a lying header ends in a CRC error, not in unbounded memory).
    """
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = archive.infolist()
    expanded = sum(member.file_size for member in members)
    compressed = sum(member.compress_size for member in members)
    detail = f"zip bomb guard: {expanded} bytes from {compressed}"
    if expanded > limits.max_uncompressed_bytes:
        raise UnreadableFileError(
            f"This DOCX expands to more than {_format_size(limits.max_uncompressed_bytes)} "
            "when unpacked; it was refused.",
            detail=detail,
        )
    dense = [m for m in members if _too_dense(m.file_size, m.compress_size, limits)]
    if dense or _too_dense(expanded, compressed, limits):
        raise UnreadableFileError(
            f"This DOCX expands to {_format_size(expanded)} when unpacked, more than "
            f"{limits.max_compression_ratio} times its size; it was refused.",
            detail=detail,
        )


def _too_dense(expanded: int, compressed: int, limits: ExtractionLimits) -> bool:
    return expanded > RATIO_CHECK_FLOOR and expanded > limits.max_compression_ratio * max(
        compressed, 1
    )


def _check_chars(count: int, limits: ExtractionLimits) -> None:
    if count > limits.max_chars:
        raise FileTooLargeError(
            f"This document has more than {limits.max_chars:,} characters of text; "
            "split it into smaller files."
        )


def _damaged(kind: str, exc: BaseException | None, *, detail: str = "") -> UnreadableFileError:
    return UnreadableFileError(
        DAMAGED_MESSAGE.format(kind=kind), detail=detail or f"{kind} parser: {exc!r}"
    )


def _format_size(size: int) -> str:
    megabytes = size / (1024 * 1024)
    if megabytes >= 1:
        return f"{megabytes:,.1f} MB".replace(".0 MB", " MB")
    return f"{max(size // 1024, 1):,} KB"


_KIND_LABELS: dict[DocumentKind | None, str] = {
    DocumentKind.PDF: "PDF file",
    DocumentKind.DOCX: "DOCX file",
    DocumentKind.TXT: "text file",
    DocumentKind.MARKDOWN: "Markdown file",
}
