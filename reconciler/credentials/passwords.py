"""Generated first passwords: typeable by a 12-year-old, no look-alike characters."""

from __future__ import annotations

import secrets

# No 0/o, 1/l/i: a password read off a printed slip must be typed right the first time.
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
GROUPS, GROUP_LENGTH = 3, 4  # 12 characters from 31: about 59 bits


def generate() -> str:
    """e.g. ``k7qm-x3pt-zr9w``."""
    return "-".join("".join(secrets.choice(ALPHABET) for _ in range(GROUP_LENGTH)) for _ in range(GROUPS))
