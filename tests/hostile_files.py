"""Hostile and malformed uploads, built in memory, for extraction and API tests.

Each builder returns the file's bytes. ``hostile_cases`` pairs them with the
file name to upload under, the error ``extract`` must raise and a word its
public message must contain, so API tests can reuse the same table.
"""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from docx import Document
from pypdf import PdfWriter

from histora.errors import (
    FileTooLargeError,
    InvalidInputError,
    UnreadableFileError,
    UnsupportedFileError,
)

MIB = 1024 * 1024
SAMPLE_TEXT = "Café, naïve façade: “Smart quotes” — and the Straße to Zürich. Ελληνικά."
_W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"

# -- PDFs, from raw syntax (no extra dependency) ----------------------------------------


def _pdf_string(text: str) -> bytes:
    raw = text.encode("cp1252", errors="replace")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def _text_stream(lines: list[str]) -> bytes:
    body = b" Tj T* ".join(_pdf_string(line) for line in lines)
    return b"BT /F1 11 Tf 72 720 Td 14 TL " + body + b" Tj ET"


def build_pdf(page_streams: list[bytes]) -> bytes:
    """A valid PDF: one page per content stream, a WinAnsi font F1 and a 2x2 image Im1."""
    count = len(page_streams)
    kids = " ".join(f"{5 + 2 * i} 0 R" for i in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /XObject /Subtype /Image /Width 2 /Height 2 /ColorSpace /DeviceGray"
        b" /BitsPerComponent 8 /Length 4 >>\nstream\n\x00\xff\xff\x00\nendstream",
    ]
    resources = "<< /Font << /F1 3 0 R >> /XObject << /Im1 4 0 R >> >>"
    for i, stream in enumerate(page_streams):
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources {resources}"
            f" /Contents {6 + 2 * i} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def text_pdf(pages: list[list[str]]) -> bytes:
    """A PDF with a real text layer: ``pages`` is a list of lines per page."""
    return build_pdf([_text_stream(lines) for lines in pages])


def sample_pdf(page_count: int = 3) -> bytes:
    return text_pdf(
        [
            [f"Page {n} of the sample.", "The quick brown fox jumps over the lazy dog."]
            for n in range(1, page_count + 1)
        ]
    )


def truncated_pdf() -> bytes:
    """A download cut short: header and first objects only, no pages tree, no xref."""
    data = sample_pdf()
    return data[: data.index(b"3 0 obj")]


def encrypted_pdf(user_password: str = "secret") -> bytes:
    """AES-256 encrypted; with ``user_password=""`` anyone may open it."""
    writer = PdfWriter(clone_from=io.BytesIO(sample_pdf()))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def cyclic_pdf() -> bytes:
    """A page tree whose only kid is itself (infinite recursion for naive readers)."""
    return sample_pdf(page_count=1).replace(b"/Kids [5 0 R]", b"/Kids [2 0 R]")


def pdf_with_broken_page() -> bytes:
    """Two pages; the second's content claims a compression it does not have."""
    data = sample_pdf(page_count=2)
    second = data.index(b"8 0 obj\n<< /Length")
    return data[:second] + data[second:].replace(
        b"<< /Length", b"<< /Filter /FlateDecode /Length", 1
    )


def pdf_stream_bomb(expanded_bytes: int = 200 * MIB) -> bytes:
    """A one-page PDF whose content stream inflates about 1000x (spaces after the text)."""
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(_text_stream(["Hello from a compressed page."]))]
    block = b" " * MIB
    parts += [compressor.compress(block) for _ in range(expanded_bytes // MIB)]
    parts.append(compressor.flush())
    body = b"".join(parts)
    stream = b"<< /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream" % (len(body), body)
    data = sample_pdf(page_count=1)
    start = data.index(b"6 0 obj\n") + len(b"6 0 obj\n")
    return data[:start] + stream + data[data.index(b"\nendobj", start) :]


def image_only_pdf(page_count: int = 2) -> bytes:
    """Pages with an image and a filled rectangle but no text (like a scan)."""
    stream = b"q 200 0 0 200 100 300 cm /Im1 Do Q 0.2 0.4 0.8 rg 72 72 100 100 re f"
    return build_pdf([stream] * page_count)


# -- DOCX and zips ----------------------------------------------------------------------


def sample_docx(paragraphs: tuple[str, ...] = ("Hello from a small Word file.",)) -> bytes:
    document = Document()
    for text in paragraphs:
        document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _rewrite_zip(
    source: bytes, *, drop: frozenset[str] = frozenset(), replace: dict[str, bytes] | None = None
) -> bytes:
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(source)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for name in src.namelist():
            if name not in drop:
                dst.writestr(name, (replace or {}).get(name, src.read(name)))
    return out.getvalue()


def _streamed_document_xml(archive: zipfile.ZipFile, padding: int) -> None:
    """word/document.xml with ``padding`` bytes of whitespace, written in slices."""
    with archive.open("word/document.xml", "w") as member:
        member.write(f'<?xml version="1.0"?><w:document xmlns:w="{_W_NS}"><w:body>'.encode())
        block = b" " * MIB
        for _ in range(padding // MIB):
            member.write(block)
        member.write(b" " * (padding % MIB))
        member.write(b"<w:p><w:r><w:t>bomb</w:t></w:r></w:p></w:body></w:document>")


def docx_zip_bomb(expanded_bytes: int = 128 * MIB) -> bytes:
    """A valid-looking DOCX whose document.xml inflates about 1000x (128 MiB by default)."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(sample_docx())) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst,
    ):
        for name in src.namelist():
            if name == "word/document.xml":
                _streamed_document_xml(dst, expanded_bytes)
            else:
                dst.writestr(name, src.read(name))
    return out.getvalue()


def docx_lying_sizes(real_bytes: int = 4 * MIB, declared_bytes: int = 1000) -> bytes:
    """A bomb whose headers understate document.xml's size (``declared_bytes``)."""
    data = bytearray(docx_zip_bomb(real_bytes))
    name = b"word/document.xml"
    central = data.find(b"PK\x01\x02")
    while central != -1:
        name_length = struct.unpack_from("<H", data, central + 28)[0]
        if data[central + 46 : central + 46 + name_length] == name:
            struct.pack_into("<I", data, central + 24, declared_bytes)  # uncompressed size
            local = struct.unpack_from("<I", data, central + 42)[0]
            struct.pack_into("<I", data, local + 22, declared_bytes)
        central = data.find(b"PK\x01\x02", central + 4)
    return bytes(data)


def docx_entity_bomb(depth: int = 10) -> bytes:
    """ "Billion laughs": nested XML entities that expand to 10**depth copies of "lol"."""
    entities = "".join(
        f'<!ENTITY e{i} "{f"&e{i - 1};" * 10 if i else "lol"}">' for i in range(depth)
    )
    xml = (
        f'<?xml version="1.0"?><!DOCTYPE d [{entities}]><w:document xmlns:w="{_W_NS}">'
        f"<w:body><w:p><w:r><w:t>&e{depth - 1};</w:t></w:r></w:p></w:body></w:document>"
    )
    return _rewrite_zip(sample_docx(), replace={"word/document.xml": xml.encode()})


def truncated_docx() -> bytes:
    data = sample_docx()
    return data[: len(data) // 2]


def docx_without_content_types() -> bytes:
    return _rewrite_zip(sample_docx(), drop=frozenset({"[Content_Types].xml"}))


def zip_with_many_members(count: int = 3000) -> bytes:
    """A DOCX padded with thousands of empty parts (each costs memory to list)."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(sample_docx())) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for name in src.namelist():
            dst.writestr(name, src.read(name))
        for n in range(count):
            dst.writestr(f"customXml/padding{n}.xml", b"")
    return out.getvalue()


def zip_not_docx() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("notes.txt", "Just some notes in a zip.")
        archive.writestr("data/values.csv", "a,b\n1,2\n")
    return out.getvalue()


# -- text and garbage -------------------------------------------------------------------


def random_bytes(size: int = 64 * 1024, seed: int = 5) -> bytes:
    return random.Random(seed).randbytes(size)


def binary_garbage() -> bytes:
    """A PNG signature and binary noise: what an image renamed notes.txt looks like."""
    return b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + random_bytes(4096, seed=7)


def oversize(cap: int) -> bytes:
    """Plain text one byte over ``cap``."""
    return b"a" * (cap + 1)


def empty() -> bytes:
    return b""


def utf16_text(text: str = SAMPLE_TEXT, *, bom: bool = True) -> bytes:
    return text.encode("utf-16" if bom else "utf-16-le")


def latin1_text(text: str = "Café au lait, déjà vu, naïve façade; Zürich ist schön.") -> bytes:
    return text.encode("latin-1")


# -- the table --------------------------------------------------------------------------


@dataclass(frozen=True)
class HostileCase:
    id: str
    filename: str
    build: Callable[[], bytes]
    error: type[InvalidInputError]
    reason: str  # lower-case word the public message must contain


def hostile_cases(*, max_bytes: int) -> list[HostileCase]:
    """Every hostile upload with the error it must produce under default limits."""
    unreadable, unsupported = UnreadableFileError, UnsupportedFileError
    return [
        HostileCase("truncated-pdf", "book.pdf", truncated_pdf, unreadable, "damaged"),
        HostileCase("random-bytes", "blob.bin", random_bytes, unsupported, "not supported"),
        HostileCase("zip-bomb", "bomb.docx", docx_zip_bomb, unreadable, "expands"),
        HostileCase("lying-zip", "liar.docx", docx_lying_sizes, unreadable, "damaged"),
        HostileCase("encrypted-pdf", "secret.pdf", encrypted_pdf, unreadable, "password"),
        HostileCase("image-only-pdf", "scan.pdf", image_only_pdf, unreadable, "scanned"),
        HostileCase("oversize", "big.txt", lambda: oversize(max_bytes), FileTooLargeError, "limit"),
        HostileCase("empty", "empty.txt", empty, unreadable, "empty"),
        HostileCase("many-parts", "parts.docx", zip_with_many_members, unreadable, "too many"),
        HostileCase("zip-not-docx", "archive.docx", zip_not_docx, unsupported, "not supported"),
        HostileCase(
            "docx-no-content-types", "x.docx", docx_without_content_types, unreadable, "damaged"
        ),
        HostileCase("truncated-docx", "cut.docx", truncated_docx, unreadable, "damaged"),
        HostileCase("entity-bomb", "laughs.docx", docx_entity_bomb, unreadable, "damaged"),
        HostileCase("pdf-stream-bomb", "dense.pdf", pdf_stream_bomb, unreadable, "damaged"),
        HostileCase("cyclic-pdf", "loop.pdf", cyclic_pdf, unreadable, "damaged"),
        HostileCase("binary-as-txt", "notes.txt", binary_garbage, unsupported, "not supported"),
    ]
