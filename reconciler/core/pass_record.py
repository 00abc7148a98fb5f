"""The daemon's record of one pass (<state_dir>/status.json), as one frozen type.

The daemon writes it after every pass, whatever happened (the file busy or invalid, an error, a plan applied);
`GET /api/status` answers with it, the metrics and `reconcile status` read it.  ``to_json`` is the file's
format (``FORMAT``): the fields a pass did not reach are left out, as they always were.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from .actions import freeze, thaw
from .actual import Disk

# what a pass can end in: the engine's verdicts of an applying pass, and the three ways a pass never planned
RESULTS = ("converged", "failed", "waiting", "refused", "interrupted", "invalid", "busy", "error")


@dataclass(frozen=True)
class Condition:
    """How one person came out of the pass."""

    condition: str  # ok / failed / waiting
    reason: str | None = None

    def to_json(self) -> dict[str, str]:
        return {"condition": self.condition, **({} if self.condition == "ok" else {"reason": self.reason})}


@dataclass(frozen=True)
class PassRecord:
    FORMAT: ClassVar[int] = 1

    time: str  # when the pass started, UTC, ISO 8601
    duration_seconds: float
    classroom_file: str
    file_sha256: str | None  # the version read (None: it could not be read whole)
    git: Mapping[str, Any] | None  # the commit the file comes from, when it lives in a checkout
    result: str  # one of RESULTS
    last_applied: Mapping[str, str] | None  # the last valid version applied: sha256, time
    problems: tuple[str, ...] | None = None  # busy, invalid, error: what went wrong
    plan: Mapping[str, Any] | None = None  # the plan, in the core's JSON format
    people: Mapping[str, Condition] = field(default_factory=lambda: MappingProxyType({}))
    applied: int | None = None
    failed: Mapping[str, str] | None = None  # target -> why
    waiting: Mapping[str, str] | None = None  # target -> what it waits for
    credentials: Mapping[str, Any] | None = None  # the delivery's report: sent, failed, waiting (or its error)
    disks: tuple[Disk, ...] | None = None
    prewarm: Mapping[str, Any] | None = None  # the next lesson's pre-warm, with a schedule
    # per assignment, after the pass: handed_out, "on time", "late", "missing", "not yet", feedback_returned
    assignments: Mapping[str, Mapping[str, int]] | None = None

    def __post_init__(self) -> None:
        if self.result not in RESULTS:
            raise ValueError(f"a pass cannot end in {self.result!r} (one of {', '.join(RESULTS)})")
        for name in ("git", "last_applied", "plan", "failed", "waiting", "credentials", "prewarm", "assignments"):
            object.__setattr__(self, name, freeze(getattr(self, name)))
        object.__setattr__(self, "people", MappingProxyType(dict(self.people)))

    @property
    def planned(self) -> bool:
        """Did the pass get as far as a plan (the file read whole and valid, no error)?"""
        return self.plan is not None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format_version": self.FORMAT}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name == "people":
                if self.planned:
                    out["people"] = {user: condition.to_json() for user, condition in value.items()}
            elif item.name == "disks":
                if value is not None:
                    out["disks"] = [disk.to_json() for disk in value]
            elif value is not None or item.name in ("file_sha256", "git", "last_applied"):
                out[item.name] = list(value) if isinstance(value, tuple) else thaw(value)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PassRecord:
        """Raises ValueError for a record of another format or one that is not a pass record at all."""
        if not isinstance(data, Mapping) or data.get("format_version") != cls.FORMAT:
            raise ValueError(f"not a pass record of format {cls.FORMAT}")
        try:
            return cls(
                time=str(data["time"]),
                duration_seconds=float(data.get("duration_seconds") or 0),
                classroom_file=str(data.get("classroom_file", "")),
                file_sha256=data.get("file_sha256"),
                git=data.get("git"),
                result=str(data["result"]),
                last_applied=data.get("last_applied"),
                problems=None if data.get("problems") is None else tuple(map(str, data["problems"])),
                plan=data.get("plan"),
                people={user: Condition(**item) for user, item in (data.get("people") or {}).items()},
                applied=data.get("applied"),
                failed=data.get("failed"),
                waiting=data.get("waiting"),
                credentials=data.get("credentials"),
                disks=None if data.get("disks") is None else tuple(Disk.from_json(d) for d in data["disks"]),
                prewarm=data.get("prewarm"),
                assignments=data.get("assignments"),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"a pass record with a missing or mistyped field: {exc}") from exc

    # --- what the metrics and the status line read ---------------------------------------------------

    def planned_actions(self) -> list[Mapping[str, Any]]:
        """Every action of the plan, drift included."""
        plan = self.plan or {}
        return [*plan.get("actions", ()), *plan.get("drift", ())]

    def drift(self) -> int:
        return len((self.plan or {}).get("drift", ()))
