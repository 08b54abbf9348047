"""Portraits drawn locally: an SVG monogram per character, no external images."""

from __future__ import annotations

import hashlib
import re
from html import escape

# Muted, print-like backgrounds per category; the exact shade varies per person.
CATEGORY_HUES = {
    "philosophy": 215,
    "science": 165,
    "art-literature": 330,
    "leadership": 25,
    "exploration-reform": 95,
}
# Lower-case particles are skipped inside a name ("Leonardo da Vinci": LV) but not at
# its start, where they are part of how the person is called ("Ibn Sina": IS).
PARTICLES = {"of", "the", "de", "da", "von", "van", "al", "ibn", "bin", "i", "ii"}


def initials(name: str) -> str:
    """Two letters for a monogram: first and last significant word."""
    # "Ibn Sina (Avicenna)": the bracketed alias is not part of the monogram.
    plain = re.sub(r"\([^)]*\)", " ", name).replace("-", " ")
    words = [w for w in plain.split() if w[0].isalpha()]
    if not words:
        return "?"
    kept = [words[0], *(w for w in words[1:] if w.lower() not in PARTICLES)]
    if len(kept) == 1:
        return kept[0][0].upper()
    return (kept[0][0] + kept[-1][0]).upper()


def portrait_svg(*, character_id: str, name: str, category: str) -> str:
    digest = hashlib.sha256(character_id.encode()).digest()
    hue = (CATEGORY_HUES.get(category, digest[0]) + digest[1] % 30 - 15) % 360
    angle = digest[2] % 180
    label = escape(initials(name))
    title = escape(name)
    light, bright = f"hsl({hue} 60% 85%)", f"hsl({hue} 70% 96%)"
    parts = [
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 256 256" role="img"',
        f' aria-label="{title}">',
        f"<title>{title}</title>",
        f'<defs><linearGradient id="g" gradientTransform="rotate({angle} .5 .5)">',
        f'<stop offset="0" stop-color="hsl({hue} 38% 30%)"/>',
        f'<stop offset="1" stop-color="hsl({(hue + 25) % 360} 45% 46%)"/>',
        "</linearGradient></defs>",
        '<rect width="256" height="256" fill="url(#g)"/>',
        f'<circle cx="128" cy="128" r="96" fill="none" stroke="{light}"',
        ' stroke-opacity=".35" stroke-width="3"/>',
        '<text x="128" y="128" dy=".35em" text-anchor="middle"',
        " font-family=\"Georgia, 'Times New Roman', serif\"",
        f' font-size="92" fill="{bright}">{label}</text>',
        "</svg>\n",
    ]
    return "".join(parts)
