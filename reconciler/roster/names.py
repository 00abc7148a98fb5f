"""People's names as school exports write them, and the usernames made from them.

A name cell comes in one of three shapes:

* ``Given Surname`` ("José Núñez", "Anna Maria De Luca"): the default;
* ``Surname, Given`` ("Núñez, José"): the most common shape of school and LMS exports; the comma
  says where the surname ends, so it is never guessed;
* ``Surname Given`` with no comma ("BIANCHI Marco"): many Italian exports; chosen with
  ``--name-order surname-first`` (the page's import dialog has the same choice).

The file always gets ``Given Surname`` (GECOS cannot hold commas), and the username is the first
letter of the given name plus the surname, folded to ASCII (``jnunez``, ``adeluca``, ``mbianchi``).
Without a comma the surname is the last word (given-first) or the first word (surname-first), with
the particles that belong to it (de, van, von, di, da, dos, ...) when they stand before it.  Particles
are recognised in the name as written, never after folding to ASCII: Vietnamese "Văn" is a middle
name, not Dutch "van".  Names in other scripts are transliterated (anyascii), so "Иван Петров" is
``ipetrov`` and a name written without spaces ("王小明") becomes one word (``wangxiaoming``).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from anyascii import anyascii

NameOrder = Literal["given-first", "surname-first"]
NAME_ORDERS: tuple[NameOrder, ...] = ("given-first", "surname-first")

# Lower-case words that belong to the surname they stand before (Latin-script names only).
PARTICLES = frozenset(
    [
        "de",
        "di",
        "da",
        "del",
        "della",
        "dello",
        "dei",
        "degli",
        "delle",
        "d'",
        "van",
        "von",
        "der",
        "den",
        "ter",
        "ten",
        "la",
        "le",
        "du",
        "des",
        "dos",
        "das",
        "do",
        "af",
        "zu",
        "al",
        "el",
        "bin",
        "ibn",
    ]
)
MAX_BASE = 28  # usernames are at most 32 characters: room for a number when the name is taken


@dataclass(frozen=True)
class Name:
    given: str  # "José", "Anna Maria"; may be empty for a single name
    surname: str  # "Núñez", "De Luca"

    @property
    def display(self) -> str:
        """As it is written in classroom.yaml: given name first."""
        return " ".join(part for part in (self.given, self.surname) if part)


def _latin(word: str) -> bool:
    return all(unicodedata.name(ch, "").startswith("LATIN") for ch in word if ch.isalpha())


def _is_particle(word: str) -> bool:
    return _latin(word) and word.lower() in PARTICLES


def parse(cell: str, order: NameOrder = "given-first") -> Name:
    """Split a name cell into given name and surname (see the module's docstring)."""
    text = " ".join(cell.split())
    if "," in text:
        surname, _, given = text.partition(",")
        given = " ".join(given.replace(",", " ").split())
        return Name(given, surname.strip())
    words = text.split(" ")
    if len(words) == 1:
        return Name("", words[0])
    if order == "surname-first":
        end = 0
        while end < len(words) - 2 and _is_particle(words[end]):
            end += 1  # "De Luca Anna": the particles and the word after them are the surname
        return Name(" ".join(words[end + 1 :]), " ".join(words[: end + 1]))
    start = len(words) - 1
    while start > 1 and _is_particle(words[start - 1]):
        start -= 1  # "Anna Maria De Luca": the particles before the last word go with it
    return Name(" ".join(words[:start]), " ".join(words[start:]))


# Greek ου is "ou" in every Latin spelling of Greek names (Papadopoulos), where anyascii writes "oy".
_GREEK_OU = re.compile("[οΟόΌ][υΥύΎ]")


def _ascii_word(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", anyascii(_GREEK_OU.sub("ou", text)).lower())


def username_for(name: Name) -> str:
    """First initial + surname, ASCII-folded: jnunez, adeluca, mbianchi; a single name as it is."""
    surname = _ascii_word(name.surname)
    given = _ascii_word(name.given)
    base = (given[:1] + surname) if surname else given
    if not base:
        return "student"
    base = base if base[0].isalpha() else "s" + base
    return base[:MAX_BASE]
