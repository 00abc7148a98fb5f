"""Human sizes ("512Mi", "1.5GiB", "1G", 1073741824) <-> bytes.

Decimal suffixes (K, M, G, T, with or without B) are powers of 1000 and
binary ones (Ki, Mi, Gi, Ti, with or without B) powers of 1024, as in
Kubernetes, so a teacher's quota means what the same string means elsewhere.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "ki": 1024,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mi": 1024**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gi": 1024**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ti": 1024**4,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")

MiB = 1024**2
GiB = 1024**3
MAX_SIZE = 1024**6  # 1 EiB: anything above is a typo, and would overflow the tools' 64-bit sizes


def parse_size(value: object) -> int:
    """Return the size in bytes; raise ValueError with a hint the teacher can act on."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512Mi or 2Gi, got a boolean")
    if isinstance(value, int):
        number, unit = Decimal(value), ""
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("a size must be a finite number")
        number, unit = Decimal(str(value)), ""
    elif isinstance(value, str):
        match = _SIZE.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a size; use e.g. 512Mi, 1.5GiB, 1G or plain bytes")
        try:
            number = Decimal(match.group(1))
        except InvalidOperation as exc:  # pragma: no cover - the regex already guards this
            raise ValueError(f"{value!r} is not a number") from exc
        unit = match.group(2).lower()
        if unit not in _UNITS:
            raise ValueError(f"unknown unit {match.group(2)!r} in {value!r}; use K, M, G, T or Ki, Mi, Gi, Ti")
    else:
        raise ValueError(f"expected a size such as 512Mi or 2Gi, got {type(value).__name__}")
    size = int(number * _UNITS[unit])
    if size <= 0:
        raise ValueError("a size must be positive")
    if size > MAX_SIZE:
        raise ValueError(f"{value!r} is larger than any volume or memory this tool can manage (1 EiB)")
    return size


def format_size(size: int | None) -> str:
    """Short binary form for plans and status ("1.5 GiB"), exact for round numbers."""
    if size is None:
        return "-"
    for unit, factor in (("TiB", 1024**4), ("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if abs(size) >= factor:
            value = size / factor
            text = f"{value:.0f}" if value == int(value) else f"{value:.2f}".rstrip("0")
            return f"{text} {unit}"
    return f"{size} B"


def round_up(size: int, step: int) -> int:
    """Round up to a multiple of ``step`` (volume sizes follow the filesystem's group size)."""
    return -(-size // step) * step
