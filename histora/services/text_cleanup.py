"""Text decoding and cleanup for extracted documents (pure, synchronous, fast).

Decoding turns the bytes of a TXT/Markdown upload into ``str`` through a chain
that never guesses when it does not have to (BOM, then strict UTF-8). Cleanup
undoes the typesetting of the source so chunks read as prose and keyword search
finds whole words: hard-wrapped lines are joined within paragraphs, words split
across line ends are de-hyphenated, control characters and runs of spaces go,
and the result is Unicode NFC.

Line joining only happens when a text *looks* hard-wrapped (most lines end near
a common width, typically 60-100 characters): a line well short of that width is
an intended break (verse, addresses, headings, the end of a paragraph) and is
kept. Markdown structure (headings, lists, quotes, tables, code) is never joined.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from functools import cached_property

from charset_normalizer import from_bytes
from charset_normalizer.md import mess_ratio

# Texts whose typical line is longer than this are not hard-wrapped (one paragraph
# per line): joining their lines would merge paragraphs.
MAX_WRAP_WIDTH = 160
# A line shorter than this fraction of the wrap width ends where the author meant it to.
SHORT_LINE_RATIO = 0.6
# A line that ends a sentence this far short of the margin, before a capital, ends a paragraph
# (PDFs mark paragraphs no other way). Measured on the wrapped corpus text: 1 wrong break in 3,231.
SENTENCE_LINE_RATIO = 0.8
# A block of this many lines, nearly all starting with a capital, is verse: keep its breaks.
VERSE_MIN_LINES = 3
VERSE_CAPITAL_RATIO = 0.75
# More than this share of control characters means the bytes are not text.
MAX_CONTROL_RATIO = 0.01
_SNIFF_BYTES = 64 * 1024

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16: its BOM starts with UTF-16's
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _translation_table() -> dict[int, str | None]:
    table: dict[int, str | None] = dict.fromkeys(range(0x20), None)  # C0 controls
    table.update(dict.fromkeys(range(0x7F, 0xA0), None))  # DEL and C1 controls
    table.update({0x09: " ", 0x0A: "\n", 0x0B: "\n", 0x0C: "\n\n"})  # tab, LF, VT, FF
    table.update(dict.fromkeys((0x00A0, 0x2007, 0x202F, 0x3000), " "))  # no-break spaces
    table.update(dict.fromkeys((0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF), None))  # zero-width
    table.update({0x2028: "\n", 0x2029: "\n\n"})
    # Typographic ligatures from PDFs; spelled out so "ﬁnd" matches "find".
    table.update({0xFB00: "ff", 0xFB01: "fi", 0xFB02: "fl", 0xFB03: "ffi", 0xFB04: "ffl"})
    table.update({0xFB05: "st", 0xFB06: "st"})
    return table


_TRANSLATION = _translation_table()
# str.translate visits every character (~125 ms/MB); substituting only the characters
# that need it is ~10x faster on ordinary text.
_TRANSLATABLE = re.compile(
    "[" + "".join(re.escape(chr(c)) for c in _TRANSLATION if c != 0x0A) + "]"
)
_SOFT_HYPHEN = "\u00ad"
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_STRUCTURAL = re.compile(
    r"""^\s{0,3}(
        \#{1,6}(\s|$)              # ATX heading
      | [-*+•]\s+\S                # bullet item
      | \d{1,3}[.)]\s+\S           # numbered item
      | >                          # block quote
      | \|                         # table row
      | ([-*_=])(\s*\3){2,}\s*$    # rule or setext underline
    )""",
    re.VERBOSE,
)
_HEAD_FRAGMENT = re.compile(r"([^\W\d_]+)-$")
_TAIL_FRAGMENT = re.compile(r"^([^\W\d_]+)")
_SENTENCE_END = re.compile(r"[.!?:][\"'”’)\]]*$")
_OPENING_PUNCTUATION = "\"'“‘([ "
_SPACE_RUN = re.compile(r"(?<=\S) {2,}")
_BLANK_RUN = re.compile(r"\n{3,}")
_LINE_END_SPACES = re.compile(r" +$", re.MULTILINE)
_LINE_START_SPACES = re.compile(r"^ +", re.MULTILINE)


# -- decoding ---------------------------------------------------------------------------


def decode_text(data: bytes) -> str | None:
    """Decode text bytes, or return None when they are not text (binary).

    Chain: BOM (UTF-8/16/32) -> BOM-less UTF-16 (by its NUL pattern) -> strict
    UTF-8 -> charset-normalizer's guess (cp1252 on a tie) -> cp1252 -> latin-1
    (never fails). The guess looks at the first 64 KB only, to stay fast.
    """
    text = _decode(data)
    if text is None or looks_binary(text):
        return None
    return text


def _decode(data: bytes) -> str | None:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _try_decode(data, encoding)
    utf16 = _bomless_utf16(data[:_SNIFF_BYTES])
    if utf16 is not None:
        return _try_decode(data, utf16)
    if b"\x00" in data[:_SNIFF_BYTES]:
        return None  # NUL bytes outside UTF-16/32 mean binary
    text = _try_decode(data, "utf-8")
    if text is not None:
        return text
    for fallback in (_legacy_encoding(data[:_SNIFF_BYTES]), "cp1252"):
        text = _try_decode(data, fallback) if fallback else None
        if text is not None:
            return text
    return data.decode("latin-1")


def _try_decode(data: bytes, encoding: str) -> str | None:
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def _bomless_utf16(sample: bytes) -> str | None:
    """ASCII-heavy UTF-16 has a NUL in every other byte, on one side only."""
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    even_nuls, odd_nuls = even.count(0) / len(even), odd.count(0) / len(odd)
    if odd_nuls > 0.4 and even_nuls < 0.05:
        return "utf-16-le"
    if even_nuls > 0.4 and odd_nuls < 0.05:
        return "utf-16-be"
    return None


def _legacy_encoding(sample: bytes) -> str | None:
    """charset-normalizer's guess, except that cp1252 wins a tie.

    On Western text it often ranks cp1250 first with the same score (measured:
    "déjà" came out "déjŕ"); cp1252 is by far the most common legacy encoding, so
    it is chosen unless the guess reads as cleaner text (Cyrillic, Polish, CJK...).
    """
    best = from_bytes(sample).best()
    western = _try_decode(sample, "cp1252")
    if western is not None and (best is None or mess_ratio(western, 1.0) <= best.chaos):
        return "cp1252"
    return None if best is None else best.encoding


def looks_binary(text: str) -> bool:
    """True when too many characters are controls (other than whitespace)."""
    sample = text[:_SNIFF_BYTES]
    if not sample:
        return False
    controls = sum(
        1 for ch in sample if unicodedata.category(ch) == "Cc" and ch not in "\t\n\r\f\v"
    )
    return controls / len(sample) > MAX_CONTROL_RATIO


# -- cleanup ----------------------------------------------------------------------------


class HyphenationVocabulary:
    """Words of a document, learnt lazily, to tell "well-known" from "philo-sophy".

    A word split at a line end ("phi-" / "losophy") is joined without its hyphen,
    unless the document writes the hyphenated form elsewhere and never the solid
    one. Without such evidence the simple rule wins, so a compound that appears
    only across a line break ("well-" / "known") loses its hyphen: a small loss
    for search, and far rarer than typeset hyphenation.
    """

    def __init__(self, text: str) -> None:
        self._text = text

    @cached_property
    def _words(self) -> frozenset[str]:
        return frozenset(re.findall(r"[^\W\d_]+", self._text.lower()))

    @cached_property
    def _compounds(self) -> frozenset[str]:
        return frozenset(re.findall(r"[^\W\d_]+-[^\W\d_]+", self._text.lower()))

    def keeps_hyphen(self, head: str, tail: str) -> bool:
        head, tail = head.lower(), tail.lower()
        return f"{head}-{tail}" in self._compounds and f"{head}{tail}" not in self._words


def normalize_text(text: str) -> str:
    """Newlines to LF, controls out, spaces unified, ligatures spelled out, NFC."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _TRANSLATABLE.sub(lambda match: _TRANSLATION[ord(match.group())] or "", text)
    return unicodedata.normalize("NFC", text)


def clean_text(
    text: str,
    *,
    join_lines: bool = True,
    markdown: bool = False,
    vocabulary: HyphenationVocabulary | None = None,
) -> str:
    """Normalise ``text`` and (when ``join_lines``) undo hard wrapping.

    ``markdown`` keeps leading indentation (nested lists, indented code);
    ``vocabulary`` lets several pages of one document share what is learnt.
    """
    text = normalize_text(text)
    if join_lines:
        text = join_wrapped_lines(text, markdown=markdown, vocabulary=vocabulary)
    text = _tidy_spaces(text, markdown=markdown).replace(_SOFT_HYPHEN, "")
    return _BLANK_RUN.sub("\n\n", text).strip()


def _tidy_spaces(text: str, *, markdown: bool) -> str:
    """Collapse runs of spaces and strip line ends (and starts, outside Markdown)."""
    if "```" not in text and "~~~" not in text:  # fast path: whole-text regexes
        text = _LINE_END_SPACES.sub("", _SPACE_RUN.sub(" ", text))
        return text if markdown else _LINE_START_SPACES.sub("", text)
    lines: list[str] = []
    in_fence = False
    for line in text.split("\n"):
        fence = _FENCE.match(line) is not None
        in_fence ^= fence
        if not (fence or in_fence):  # code keeps its spacing
            line = _SPACE_RUN.sub(" ", line if markdown else line.lstrip())
        lines.append(line.rstrip())
    return "\n".join(lines)


def wrap_width(lines: list[str]) -> int | None:
    """The width a text was hard-wrapped at, or None when it is not hard-wrapped."""
    lengths = sorted(len(line.rstrip()) for line in lines if line.strip())
    if not lengths:
        return None
    width = lengths[int(0.9 * (len(lengths) - 1))]
    return width if width <= MAX_WRAP_WIDTH else None


def join_wrapped_lines(
    text: str, *, markdown: bool = False, vocabulary: HyphenationVocabulary | None = None
) -> str:
    """Join the physical lines of each paragraph into one line (see module doc)."""
    raw_lines = text.split("\n")
    width = wrap_width(raw_lines)
    if width is None:
        return text
    vocab = vocabulary or HyphenationVocabulary(text)
    verse = _verse_lines(raw_lines)
    out: list[str] = []
    before: str | None = None  # the previous physical line, when it may be continued
    in_fence = False
    for index, raw in enumerate(raw_lines):
        line = raw.rstrip()
        fence = _FENCE.match(line) is not None
        in_fence ^= fence
        plain = not (fence or in_fence) and line.strip() != "" and not _STRUCTURAL.match(line)
        if plain and before is not None and _continues(before, line, width):
            out[-1] = _merge(out[-1], line.strip(), vocab)
        else:
            out.append(line)
        hard_break = markdown and (raw.endswith("  ") or line.endswith("\\"))
        before = line if plain and not hard_break and index not in verse else None
    return "\n".join(out)


def _continues(before: str, line: str, width: int) -> bool:
    """Does ``line`` continue the paragraph of the line ``before`` it?"""
    length = len(before.strip())
    if line[0].isspace() or length < SHORT_LINE_RATIO * width:
        return False  # an indented line starts a paragraph; a short one ended one
    if _SENTENCE_END.search(before) and length < SENTENCE_LINE_RATIO * width:
        # A sentence ending well short of the margin, then a capital: a new paragraph.
        return not line.lstrip(_OPENING_PUNCTUATION)[:1].isupper()
    return True


def _verse_lines(lines: list[str]) -> set[int]:
    """Indices of lines in verse-like blocks, whose line breaks are meaningful.

    In a block of 3+ lines where nearly every line after the first starts with a
    capital (verse, a list of names, an address), the breaks are the author's; in
    wrapped prose only sentence and proper-noun starts do (about one line in five).
    """
    verse: set[int] = set()
    start = 0
    for end in [*(i for i, line in enumerate(lines) if not line.strip()), len(lines)]:
        block = lines[start + 1 : end]
        if len(block) >= VERSE_MIN_LINES - 1:
            capitals = sum(1 for line in block if line.lstrip()[:1].isupper())
            if capitals >= VERSE_CAPITAL_RATIO * len(block):
                verse.update(range(start, end))
        start = end + 1
    return verse


def _merge(previous: str, line: str, vocabulary: HyphenationVocabulary) -> str:
    if previous.endswith(_SOFT_HYPHEN):
        return previous[:-1] + line
    if previous.endswith("--"):
        return previous + line  # a typed em dash
    if previous.endswith("-"):
        head, tail = _HEAD_FRAGMENT.search(previous), _TAIL_FRAGMENT.match(line)
        if head and tail and line[0].islower():
            if vocabulary.keeps_hyphen(head.group(1), tail.group(1)):
                return previous + line
            return previous[:-1] + line
        return previous + line  # "Anglo-" + "Saxon": a real hyphen, no space
    if previous.endswith("—"):
        return previous + line  # em dashes are set closed up
    return f"{previous} {line}"
