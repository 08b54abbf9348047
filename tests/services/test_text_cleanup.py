from __future__ import annotations

import codecs

import pytest

from histora.services.text_cleanup import (
    HyphenationVocabulary,
    clean_text,
    decode_text,
    join_wrapped_lines,
    looks_binary,
    wrap_width,
)

# A paragraph hard-wrapped at about 60 columns, as in Gutenberg texts and PDFs.
WRAPPED = (
    "The study of natural philosophy requires patience and care,\n"
    "and a mind that is willing to doubt what it has been taught\n"
    "by others before it accepts anything as certainly true.\n"
    "\n"
    "A second paragraph follows here, and it is also wrapped at\n"
    "the same width as the first one was, for the sake of tests."
)


def test_join_wrapped_lines_joins_within_paragraphs_and_keeps_paragraph_breaks() -> None:
    assert clean_text(WRAPPED) == (
        "The study of natural philosophy requires patience and care, and a mind that is "
        "willing to doubt what it has been taught by others before it accepts anything as "
        "certainly true.\n\n"
        "A second paragraph follows here, and it is also wrapped at the same width as the "
        "first one was, for the sake of tests."
    )


def test_dehyphenates_a_word_split_across_lines() -> None:
    text = (
        "Of all the things a man may study, none is harder than phi-\n"
        "losophy, which asks him to examine every belief he holds dear."
    )
    assert "philosophy, which" in clean_text(text)
    assert "phi-" not in clean_text(text)


def test_keeps_hyphen_before_a_capitalised_line() -> None:
    text = (
        "The chronicle describes the customs of the early Anglo-\n"
        "Saxon kingdoms and the laws that their assemblies made."
    )
    assert "Anglo-Saxon kingdoms" in clean_text(text)


def test_keeps_hyphen_of_a_compound_the_document_spells_with_one() -> None:
    text = (
        "He was a well-known man in the city, and his house was large.\n"
        "\n"
        "Everyone agreed that the merchant was a very kind and well-\n"
        "known figure in the markets of the old town by the river."
    )
    assert "a very kind and well-known figure" in clean_text(text)


def test_vocabulary_prefers_the_solid_spelling_when_both_appear() -> None:
    vocabulary = HyphenationVocabulary("to-day and today and to-morrow")
    assert vocabulary.keeps_hyphen("to", "morrow")
    assert not vocabulary.keeps_hyphen("to", "day")
    assert not vocabulary.keeps_hyphen("philo", "sophy")


def test_soft_hyphen_at_line_end_joins_without_space() -> None:
    text = (
        "The lecture on the history of natural philo\u00ad\n"
        "sophy lasted for three long hours in the cold hall."
    )
    assert "natural philosophy lasted" in clean_text(text)


def test_short_lines_and_paragraph_ends_are_intended_breaks() -> None:
    text = (
        "Four score and seven years ago our fathers brought forth on this\n"
        "continent a new nation, conceived in Liberty, and dedicated to the\n"
        "proposition that all men are created equal.\n"
        "Now we are engaged in a great civil war, testing whether that\n"
        "nation can long endure.\n"
        "Abraham Lincoln\n"
        "November 19, 1863"
    )
    assert clean_text(text).split("\n") == [
        "Four score and seven years ago our fathers brought forth on this continent a new "
        "nation, conceived in Liberty, and dedicated to the proposition that all men are "
        "created equal.",
        "Now we are engaged in a great civil war, testing whether that nation can long endure.",
        "Abraham Lincoln",
        "November 19, 1863",
    ]


def test_verse_keeps_its_line_breaks() -> None:
    verse = (
        "HORATIO. So have I heard and do in part believe it.\n"
        "But, look, the morn, in russet mantle clad,\n"
        "Walks o'er the dew of yon high eastward hill:\n"
        "Break we our watch up; and by my advice,\n"
        "Let us impart what we have seen tonight\n"
        "Unto young Hamlet; for, upon my life,"
    )
    assert clean_text(verse) == verse


def test_markdown_structure_is_never_joined() -> None:
    text = (
        "# A heading that is long enough to look like a wrapped line\n"
        "Body text of the first section, wrapped at a width of sixty\n"
        "characters so that the cleanup joins its lines together.\n"
        "- a list item that is long enough to be joined to the next\n"
        "- another list item that must stay on its very own line too\n"
        "```python\n"
        "def  keep(me):   # spacing and lines inside code are kept....\n"
        "    return me    # even when the line is long enough to join\n"
        "```\n"
        "> A quotation that is long enough to be joined with the next\n"
        "| a | table | row | that is long enough to be joined as well |"
    )
    cleaned = clean_text(text, markdown=True)
    lines = cleaned.split("\n")
    assert lines[0] == "# A heading that is long enough to look like a wrapped line"
    assert lines[1] == (
        "Body text of the first section, wrapped at a width of sixty characters so that "
        "the cleanup joins its lines together."
    )
    assert lines[2].startswith("- a list item") and lines[3].startswith("- another")
    assert "def  keep(me):   # spacing and lines inside code are kept...." in lines
    assert any(line.startswith("    return me    #") for line in lines)
    assert lines[-2].startswith("> A quotation") and lines[-1].startswith("| a | table")


def test_text_that_is_not_hard_wrapped_is_left_alone() -> None:
    long_paragraph = "word " * 60
    text = f"{long_paragraph.strip()}\n{long_paragraph.strip()}\nshort"
    assert wrap_width(text.split("\n")) is None
    assert join_wrapped_lines(text) == text


def test_normalises_controls_spaces_ligatures_and_unicode() -> None:
    text = "Caf\u0065\u0301\tau\u00a0lait\x07   and  the \ufb01rst\x00 time\r\nnext\rline"
    assert clean_text(text, join_lines=False) == "Café au lait and the first time\nnext\nline"


def test_collapses_blank_line_runs_and_strips_edges() -> None:
    assert clean_text("\n\n  one  \n\n\n\n\ntwo\n\n") == "one\n\ntwo"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (codecs.BOM_UTF8 + "naïve café".encode(), "naïve café"),
        ("naïve café".encode("utf-16"), "naïve café"),
        ("naïve café".encode("utf-16-be"), "naïve café"),
        ("naïve café".encode("utf-32"), "naïve café"),
        ("Straße, déjà vu, “quotes”".encode("cp1252"), "Straße, déjà vu, “quotes”"),
        (
            "Café au lait, déjà vu, naïve façade.".encode("latin-1"),
            "Café au lait, déjà vu, naïve façade.",
        ),
        (
            "Привет, как дела? Это тестовый текст на русском языке.".encode("cp1251"),
            "Привет, как дела? Это тестовый текст на русском языке.",
        ),
        (
            "Zażółć gęślą jaźń. Pchnąć w tę łódź jeża lub ośm skrzyń fig.".encode("cp1250"),
            "Zażółć gęślą jaźń. Pchnąć w tę łódź jeża lub ośm skrzyń fig.",
        ),
    ],
    ids=[
        "utf8-bom",
        "utf16-bom",
        "utf16-be-no-bom",
        "utf32",
        "cp1252",
        "latin1",
        "cp1251",
        "cp1250",
    ],
)
def test_decode_text_chain(data: bytes, expected: str) -> None:
    assert decode_text(data) == expected


def test_decode_text_refuses_binary() -> None:
    assert decode_text(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01") is None
    assert decode_text(bytes(range(1, 32)) * 10) is None  # controls without NULs
    assert looks_binary("plain text\twith\ttabs\nand lines\f") is False
