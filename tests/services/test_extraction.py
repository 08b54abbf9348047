from __future__ import annotations

import io
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from docx import Document
from docx.document import Document as WordDocument

from histora.errors import FileTooLargeError, UnreadableFileError, UnsupportedFileError
from histora.models.documents import DocumentKind
from histora.services.extraction import (
    ExtractionLimits,
    detect_kind,
    extract,
    looks_like_markdown,
)
from histora.settings import Settings
from tests import hostile_files as hostile

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"
MEDITATIONS_PDF = CORPUS / "marcus-aurelius__meditations.pdf"
DESCARTES_DOCX = CORPUS / "descartes__discourse-on-method.docx"
ANALECTS_MD = CORPUS / "confucius__analects.md"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def limits() -> ExtractionLimits:
    return ExtractionLimits.from_settings(Settings(_env_file=None))


def _docx(build: Callable[[WordDocument], object]) -> bytes:
    document = Document()
    build(document)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_limits_come_from_the_upload_settings() -> None:
    settings = Settings(
        _env_file=None,
        upload_max_bytes=2048,
        upload_max_pages=7,
        upload_max_chars=5000,
        upload_max_uncompressed_bytes=4096,
        upload_max_compression_ratio=9,
    )
    assert ExtractionLimits.from_settings(settings) == ExtractionLimits(
        max_bytes=2048,
        max_pages=7,
        max_chars=5000,
        max_uncompressed_bytes=4096,
        max_compression_ratio=9,
    )


# -- the real corpus --------------------------------------------------------------------


def test_meditations_pdf_has_numbered_pages_with_their_text(limits: ExtractionLimits) -> None:
    doc = extract(MEDITATIONS_PDF.read_bytes(), filename="meditations.pdf", limits=limits)
    assert doc.kind is DocumentKind.PDF
    assert doc.page_count == 23
    assert [page.number for page in doc.pages] == list(range(1, 24))
    pages = {page.number: page.text for page in doc.pages}
    assert "From my grandfather Verus I learned good morals" in pages[2]
    assert pages[7].startswith("Book II\nBegin the morning by saying to thyself")
    assert "Time is like a river made up of the events which happen" in pages[22]
    # Justified lines are re-joined into paragraphs, without the justification spaces.
    assert "the government of my temper.\nFrom the reputation" in pages[2]
    assert all("  " not in text for text in pages.values())


def test_descartes_docx_keeps_headings_paragraphs_and_the_table(
    limits: ExtractionLimits,
) -> None:
    doc = extract(DESCARTES_DOCX.read_bytes(), filename="discourse.docx", limits=limits)
    assert doc.kind is DocumentKind.DOCX
    assert doc.page_count is None
    assert [page.number for page in doc.pages] == [None]
    text = doc.pages[0].text
    assert "\n\nTable of Contents\n\n" in text  # a heading, as its own paragraph
    assert "Part | Subject (from the author's prefatory note) | Words" in text
    assert "Part I | Various considerations touching the sciences | 2636" in text
    assert "\n\nPart IV — Proofs of the existence of God and of the human soul\n\n" in text
    assert "Good Sense or Reason, is by nature equal in all men" in text


def test_docx_tables_keep_cells_once_and_nested_content(limits: ExtractionLimits) -> None:
    def build(document: WordDocument) -> None:
        document.add_heading("Correspondents", level=1)
        document.add_paragraph("Letters received in the spring.")
        table = document.add_table(rows=3, cols=3)
        for column, value in enumerate(("Name", "Born", "City", "Seneca", "4 BC")):
            table.cell(column // 3, column % 3).text = value
        merged = table.cell(2, 0).merge(table.cell(2, 2))
        merged.text = "A note spanning the whole row"
        table.cell(1, 2).add_table(rows=1, cols=1).cell(0, 0).text = "Corduba"
        document.add_paragraph("After the table.")

    doc = extract(_docx(build), filename="letters.docx", limits=limits)
    assert doc.pages[0].text.split("\n") == [
        "Correspondents",
        "",
        "Letters received in the spring.",
        "",
        "Name | Born | City",
        "Seneca | 4 BC | Corduba",
        "A note spanning the whole row",
        "",
        "After the table.",
    ]


def test_analects_markdown_is_markdown_and_keeps_headings(limits: ExtractionLimits) -> None:
    data = ANALECTS_MD.read_bytes()
    doc = extract(data, filename="analects.md", limits=limits)
    assert doc.kind is DocumentKind.MARKDOWN
    lines = doc.pages[0].text.split("\n")
    assert lines[0] == "# The Sayings of Confucius (Analects)"
    assert "## Book I" in lines and "## Book XX" in lines
    # Content decides too: the same bytes under a .txt name are still Markdown.
    assert detect_kind(data, filename="analects.txt") is DocumentKind.MARKDOWN
    assert detect_kind((CORPUS / "confucius__analects.txt").read_bytes(), filename="a.txt") == (
        DocumentKind.TXT
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (hostile.utf16_text(), hostile.SAMPLE_TEXT),
        (hostile.utf16_text(bom=False), hostile.SAMPLE_TEXT),
        (hostile.latin1_text(), "Café au lait, déjà vu, naïve façade; Zürich ist schön."),
    ],
    ids=["utf16-bom", "utf16-no-bom", "latin1"],
)
def test_legacy_text_encodings_decode(data: bytes, expected: str, limits: ExtractionLimits) -> None:
    doc = extract(data, filename="notes.txt", limits=limits)
    assert doc.kind is DocumentKind.TXT
    assert doc.pages == [doc.pages[0]] and doc.pages[0].number is None
    assert doc.pages[0].text == expected


# -- hostile files ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", hostile.hostile_cases(max_bytes=20 * MIB), ids=lambda case: case.id
)
def test_hostile_file_gets_the_right_error_and_a_clear_message(
    case: hostile.HostileCase, limits: ExtractionLimits
) -> None:
    assert limits.max_bytes == 20 * MIB
    with pytest.raises(case.error) as caught:
        extract(case.build(), filename=case.filename, limits=limits)
    assert type(caught.value) is case.error
    message = caught.value.public_message
    assert case.reason in message.lower()
    for leak in ("Error", "pypdf", "docx.", "zipfile", "lxml", "\n"):  # no exception text
        assert leak not in message


@pytest.mark.parametrize(
    "build",
    [
        hostile.docx_zip_bomb,
        hostile.docx_lying_sizes,
        hostile.pdf_stream_bomb,
        lambda: hostile.oversize(20 * MIB),
    ],
    ids=["zip-bomb", "lying-zip", "pdf-stream-bomb", "oversize"],
)
def test_memory_stays_bounded(build: Callable[[], bytes], limits: ExtractionLimits) -> None:
    data = build()
    tracemalloc.start()
    try:
        with pytest.raises((UnreadableFileError, FileTooLargeError)):
            extract(data, filename="file.docx", limits=limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * MIB


def test_zip_bomb_is_refused_by_ratio_even_under_the_size_cap(limits: ExtractionLimits) -> None:
    bomb = hostile.docx_zip_bomb(expanded_bytes=8 * MIB)  # well under 100 MB, ~1000x
    with pytest.raises(UnreadableFileError) as caught:
        extract(bomb, filename="small-bomb.docx", limits=limits)
    message = caught.value.public_message
    assert message.startswith("This DOCX expands to 8.")  # 8 MiB of padding + the template
    assert message.endswith("MB when unpacked, more than 100 times its size; it was refused.")


def test_zip_bomb_is_refused_by_size_even_at_a_plain_ratio() -> None:
    tight = ExtractionLimits(
        max_bytes=MIB,
        max_pages=10,
        max_chars=10_000,
        max_uncompressed_bytes=4096,
        max_compression_ratio=10_000,
    )
    with pytest.raises(UnreadableFileError) as caught:
        extract(hostile.sample_docx(), filename="fine.docx", limits=tight)
    assert caught.value.public_message == (
        "This DOCX expands to more than 4 KB when unpacked; it was refused."
    )


def test_pdf_page_that_cannot_be_decoded_does_not_lose_the_others(
    limits: ExtractionLimits,
) -> None:
    doc = extract(hostile.pdf_with_broken_page(), filename="half.pdf", limits=limits)
    assert doc.page_count == 2
    assert doc.pages[0].text.startswith("Page 1 of the sample.")
    assert doc.pages[1].text == ""


def test_pdf_with_an_empty_user_password_is_read(limits: ExtractionLimits) -> None:
    doc = extract(hostile.encrypted_pdf(user_password=""), filename="open.pdf", limits=limits)
    assert doc.page_count == 3
    assert doc.pages[1].text.startswith("Page 2 of the sample.")


def test_pdf_over_the_page_limit_is_refused_with_counts() -> None:
    tight = ExtractionLimits(
        max_bytes=MIB,
        max_pages=2,
        max_chars=10_000,
        max_uncompressed_bytes=MIB,
        max_compression_ratio=100,
    )
    with pytest.raises(FileTooLargeError) as caught:
        extract(hostile.sample_pdf(page_count=3), filename="long.pdf", limits=tight)
    assert caught.value.public_message == "This PDF has 3 pages; the limit is 2."


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (hostile.sample_pdf(page_count=30), "many.pdf"),
        (hostile.sample_docx(("A paragraph of words. " * 100,)), "long.docx"),
        (b"Many words of text. " * 200, "long.txt"),
    ],
    ids=["pdf", "docx", "txt"],
)
def test_text_over_the_character_limit_is_refused(data: bytes, filename: str) -> None:
    tight = ExtractionLimits(
        max_bytes=MIB,
        max_pages=100,
        max_chars=1000,
        max_uncompressed_bytes=MIB,
        max_compression_ratio=100,
    )
    with pytest.raises(FileTooLargeError) as caught:
        extract(data, filename=filename, limits=tight)
    assert caught.value.public_message == (
        "This document has more than 1,000 characters of text; split it into smaller files."
    )


def test_oversize_message_names_the_sizes(limits: ExtractionLimits) -> None:
    with pytest.raises(FileTooLargeError) as caught:
        extract(b"x" * (25 * MIB), filename="big.txt", limits=limits)
    assert caught.value.public_message == "This file is 25 MB; the limit is 20 MB."


@pytest.mark.parametrize("data", [b"   \n\t ", "\ufeff  \n".encode()], ids=["spaces", "bom"])
def test_blank_text_is_refused(data: bytes, limits: ExtractionLimits) -> None:
    with pytest.raises(UnreadableFileError) as caught:
        extract(data, filename="blank.txt", limits=limits)
    assert caught.value.public_message in {
        "This file is empty.",
        "This file contains no readable text.",
    }


# -- type detection ---------------------------------------------------------------------


def test_detect_kind_ignores_the_name_for_binary_types() -> None:
    pdf, docx = hostile.sample_pdf(), hostile.sample_docx()
    assert detect_kind(pdf, filename="report.docx") is DocumentKind.PDF
    assert detect_kind(pdf, filename="report") is DocumentKind.PDF
    assert detect_kind(docx, filename="letter.pdf") is DocumentKind.DOCX
    assert detect_kind(docx, filename="letter.txt") is DocumentKind.DOCX


def test_text_named_pdf_is_text_because_content_decides(limits: ExtractionLimits) -> None:
    data = b"Plain notes that someone saved with the wrong extension."
    assert detect_kind(data, filename="notes.pdf") is DocumentKind.TXT
    doc = extract(data, filename="notes.pdf", limits=limits)
    assert doc.kind is DocumentKind.TXT and doc.pages[0].text == data.decode()


def test_pdf_named_docx_extracts_as_pdf(limits: ExtractionLimits) -> None:
    doc = extract(hostile.sample_pdf(), filename="report.docx", limits=limits)
    assert doc.kind is DocumentKind.PDF and doc.page_count == 3


def test_pdf_header_after_leading_junk_is_still_pdf(limits: ExtractionLimits) -> None:
    data = b"junk written by a mail gateway\n" + hostile.sample_pdf(page_count=2)
    assert detect_kind(data, filename="mail.bin") is DocumentKind.PDF
    assert extract(data, filename="mail.bin", limits=limits).page_count == 2
    too_late = b"x" * 2000 + hostile.sample_pdf()  # then it is binary without a signature
    with pytest.raises(UnsupportedFileError):
        detect_kind(too_late, filename="late.pdf")


def test_name_only_chooses_between_text_and_markdown() -> None:
    prose = b"Just a sentence of prose, with no markup at all."
    assert detect_kind(prose, filename="notes.txt") is DocumentKind.TXT
    assert detect_kind(prose, filename="notes.MD") is DocumentKind.MARKDOWN
    assert detect_kind(prose, filename="notes.markdown") is DocumentKind.MARKDOWN
    with pytest.raises(UnsupportedFileError):
        detect_kind(hostile.binary_garbage(), filename="notes.md")
    with pytest.raises(UnsupportedFileError):
        detect_kind(hostile.zip_not_docx(), filename="notes.md")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("# Title\n\n## Part one\n\nText.", True),
        ("# Title\n\n- first\n- second", True),
        ("# Title\n\nSee [the docs](https://example.org).", True),
        ("Intro\n\n```\ncode\n```\n\n# Only heading", True),
        ("# Only one heading and plain prose after it.", False),
        ("Plain prose.\n\n1. A numbered point\n2. Another one", False),
        ("#hashtag is not a heading\n\n#another", False),
    ],
)
def test_looks_like_markdown(text: str, expected: bool) -> None:
    assert looks_like_markdown(text) is expected
