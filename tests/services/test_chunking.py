from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from histora.models.documents import DocumentKind
from histora.services.chunking import TextChunk, chunk_document, document_text
from histora.services.extraction import (
    ExtractedDocument,
    ExtractionLimits,
    PageText,
    extract,
)
from histora.settings import Settings

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"
CORPUS_FILES = sorted(
    path.name for path in CORPUS.iterdir() if path.suffix in {".pdf", ".docx", ".md", ".txt"}
)
SIZE, OVERLAP = 1200, 150


@pytest.fixture(scope="module")
def limits() -> ExtractionLimits:
    return ExtractionLimits.from_settings(Settings(_env_file=None))


@pytest.fixture(scope="module")
def meditations(limits: ExtractionLimits) -> ExtractedDocument:
    path = CORPUS / "marcus-aurelius__meditations.pdf"
    return extract(path.read_bytes(), filename=path.name, limits=limits)


def _text_doc(text: str, kind: DocumentKind = DocumentKind.TXT) -> ExtractedDocument:
    return ExtractedDocument(kind=kind, pages=[PageText(number=None, text=text)])


def _assert_well_formed(doc: ExtractedDocument, chunks: list[TextChunk], size: int) -> None:
    text = document_text(doc)
    assert chunks, "a document with text has chunks"
    assert [chunk.ordinal for chunk in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert text[chunk.char_start : chunk.char_end] == chunk.text
        assert 0 < len(chunk.text) <= size
        assert chunk.text.strip() == chunk.text  # trimmed, never whitespace-only
    for before, after in pairwise(chunks):
        assert before.char_start < after.char_start
        # Nothing but whitespace is ever skipped between chunks.
        assert text[before.char_end : after.char_start].strip() == ""


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_corpus_chunks_point_at_their_text_fit_and_overlap(
    name: str, limits: ExtractionLimits
) -> None:
    doc = extract((CORPUS / name).read_bytes(), filename=name, limits=limits)
    chunks = chunk_document(doc, size_chars=SIZE, overlap_chars=OVERLAP)
    _assert_well_formed(doc, chunks, SIZE)
    for before, after in pairwise(chunks):
        overlap = before.char_end - after.char_start
        assert 0 < overlap <= OVERLAP, (before.ordinal, overlap)


def test_pdf_chunks_carry_the_page_they_start_on(meditations: ExtractedDocument) -> None:
    chunks = chunk_document(meditations, size_chars=SIZE, overlap_chars=OVERLAP)
    text = document_text(meditations)
    page_spans = {}
    offset = 0
    for page in meditations.pages:
        page_spans[page.number] = (offset, offset + len(page.text))
        offset += len(page.text) + 2
    for chunk in chunks:
        assert chunk.page is not None
        start, end = page_spans[chunk.page]
        assert start <= chunk.char_start < end, chunk.ordinal
        assert (
            text[chunk.char_start : chunk.char_start + 30] in meditations.pages[chunk.page - 1].text
        )
    assert {chunk.page for chunk in chunks} == set(range(1, 24))
    # Book II opens page 7: a chunk that starts at its heading is on page 7.
    book_two = text.index("Book II\nBegin the morning")
    starting_there = [chunk for chunk in chunks if chunk.char_start >= book_two]
    assert starting_there[0].page == 7


def test_chunk_pages_follow_page_boundaries() -> None:
    pages = [
        PageText(number=n, text=f"Page {n} opens here. " + f"Sentence on page {n}. " * 20)
        for n in (1, 2, 3)
    ]
    doc = ExtractedDocument(kind=DocumentKind.PDF, pages=pages)
    chunks = chunk_document(doc, size_chars=200, overlap_chars=0)
    _assert_well_formed(doc, chunks, 200)
    page_numbers = [chunk.page or 0 for chunk in chunks]
    for chunk, page in zip(chunks, page_numbers, strict=True):
        assert f"page {page}" in chunk.text.lower()
        assert all(f"page {n}" not in chunk.text.lower() for n in range(1, page))
    assert page_numbers == sorted(page_numbers)
    assert set(page_numbers) == {1, 2, 3}


def test_offsets_stay_right_for_non_ascii_text() -> None:
    paragraph = (
        "Ἐν ἀρχῇ ἦν ὁ λόγος — «Γνῶθι σεαυτόν». Café naïve résumé. 東京の夜は静かです。"
        " Emoji stay one character: 🏛️📜✍🏽. Combining: e\u0301 a\u0308."
    )
    doc = _text_doc("\n\n".join(f"{n}. {paragraph}" for n in range(12)))
    for overlap in (0, 40):
        chunks = chunk_document(doc, size_chars=120, overlap_chars=overlap)
        _assert_well_formed(doc, chunks, 120)
        assert any("🏛️📜" in chunk.text for chunk in chunks)


def test_overlap_repeats_the_end_of_the_previous_chunk_from_a_sentence_start() -> None:
    sentences = [f"Sentence number {n} says something brief." for n in range(60)]
    doc = _text_doc(" ".join(sentences))
    chunks = chunk_document(doc, size_chars=300, overlap_chars=100)
    _assert_well_formed(doc, chunks, 300)
    for before, after in pairwise(chunks):
        assert before.char_end > after.char_start
        assert after.text.startswith("Sentence number")  # starts at a sentence boundary
        assert before.text.endswith(after.text[: before.char_end - after.char_start])


def test_overlap_falls_back_to_a_word_boundary_in_long_sentences() -> None:
    doc = _text_doc(" ".join(f"word{n}" for n in range(400)))  # no sentence ends at all
    chunks = chunk_document(doc, size_chars=200, overlap_chars=50)
    _assert_well_formed(doc, chunks, 200)
    for before, after in pairwise(chunks):
        assert 0 < before.char_end - after.char_start <= 50
        assert after.text.startswith("word")


def test_no_overlap_means_adjacent_chunks() -> None:
    doc = _text_doc(" ".join(f"Point {n} is made here." for n in range(100)))
    chunks = chunk_document(doc, size_chars=150, overlap_chars=0)
    _assert_well_formed(doc, chunks, 150)
    for before, after in pairwise(chunks):
        assert after.char_start >= before.char_end


def test_markdown_chunks_break_at_headings(limits: ExtractionLimits) -> None:
    path = CORPUS / "confucius__analects.md"
    doc = extract(path.read_bytes(), filename=path.name, limits=limits)
    chunks = chunk_document(doc, size_chars=SIZE, overlap_chars=0)
    starts = [chunk.text.split("\n", 1)[0] for chunk in chunks]
    assert sum(start.startswith("## Book") for start in starts) >= 10
    assert all(chunk.page is None for chunk in chunks)


def test_chunking_is_deterministic(meditations: ExtractedDocument) -> None:
    first = chunk_document(meditations, size_chars=SIZE, overlap_chars=OVERLAP)
    assert chunk_document(meditations, size_chars=SIZE, overlap_chars=OVERLAP) == first


def test_document_text_joins_pages_with_a_blank_line() -> None:
    doc = ExtractedDocument(
        kind=DocumentKind.PDF,
        pages=[PageText(number=1, text="one"), PageText(number=2, text="two")],
    )
    assert document_text(doc) == "one\n\ntwo"
    assert document_text(ExtractedDocument(kind=DocumentKind.TXT, pages=[])) == ""


def test_empty_and_blank_documents_have_no_chunks() -> None:
    assert chunk_document(_text_doc(""), size_chars=200, overlap_chars=20) == []
    assert chunk_document(_text_doc(" \n\n \t"), size_chars=200, overlap_chars=20) == []
    assert (
        chunk_document(ExtractedDocument(DocumentKind.PDF, []), size_chars=200, overlap_chars=0)
        == []
    )


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (100, 100), (100, -1), (100, 150)])
def test_invalid_sizes_are_refused(size: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk_document(_text_doc("text"), size_chars=size, overlap_chars=overlap)
