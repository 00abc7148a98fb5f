"""The words of the teacher page, the credential slips and the credential e-mails: one JSON file per language.

``delivery.language`` in site.yaml picks one.  To add a language, add ``<code>.json`` here with every key of
``en.json`` (a test checks the keys and their ``{placeholders}``); nothing else changes.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

HERE = Path(__file__).parent
DEFAULT = "en"


def available() -> list[str]:
    return sorted(path.stem for path in HERE.glob("*.json"))


@cache
def catalogue(language: str) -> dict[str, str]:
    """Every string of ``language``; a key it lacks falls back to English."""
    english = json.loads((HERE / f"{DEFAULT}.json").read_text(encoding="utf-8"))
    if language == DEFAULT:
        return english
    return {**english, **json.loads((HERE / f"{language}.json").read_text(encoding="utf-8"))}


def section(language: str, prefix: str) -> dict[str, str]:
    """The strings under ``prefix.`` (e.g. "mail"), without it: what one template or the page needs."""
    return {key[len(prefix) + 1 :]: text for key, text in catalogue(language).items() if key.startswith(prefix + ".")}
