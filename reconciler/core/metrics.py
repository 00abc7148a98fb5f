"""The classroom as Prometheus gauges, from the two files the daemon writes after every pass.

Pure data (the teacher service writes it in Prometheus' text format): the last pass's record (status.json: when,
how long, its result, its plan, what failed or waits, the disks) and the people's rows of snapshot.json (state,
volume, server) come in as their types, so a scrape costs two file reads and never observes the host.  Per-person series (volume used and size) can be turned off in site.yaml
(``metrics.per_person: false``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from .pass_record import PassRecord
from .report import PersonRow


@dataclass
class Gauge:
    """One gauge and its samples (label values in the order of ``labels``)."""

    name: str
    documentation: str
    value: float | None = None
    labels: list[str] = field(default_factory=list)
    samples: list[tuple[list[str], float]] = field(default_factory=list)

    def add_metric(self, values: list[str], value: float) -> None:
        self.samples.append((values, value))


def families(status: PassRecord | None, people: Sequence[PersonRow] | None, per_person: bool = True) -> list[Gauge]:
    out: list[Gauge] = []
    if people is not None:
        by_state = Gauge(
            "classroom_people", "People by role and status (classroom.yaml and the host)", labels=["role", "status"]
        )
        for (role, status_), count in sorted(Counter((p.role or "-", p.status) for p in people).items()):
            by_state.add_metric([role, status_], count)
        out.append(by_state)
        out.append(
            _gauge(
                "classroom_servers_running",
                "Student and teacher servers running (as the hub says)",
                sum(1 for p in people if p.server == "running"),
            )
        )
        out.append(
            _gauge(
                "classroom_credentials_waiting",
                "New passwords not yet delivered (e-mail or slip)",
                sum(1 for p in people if p.credentials),
            )
        )
        out.append(
            _gauge(
                "classroom_volumes_not_mounted",
                "Volumes of active people that are not mounted",
                sum(1 for p in people if p.status == "active" and p.volume_size and not p.mounted),
            )
        )
        if per_person:
            used = Gauge("classroom_volume_used_bytes", "Bytes used on each person's volume", labels=["username"])
            size = Gauge("classroom_volume_size_bytes", "Each person's volume size", labels=["username"])
            for person in people:
                if person.volume_size is not None:
                    size.add_metric([person.username], person.volume_size)
                    used.add_metric([person.username], person.volume_used or 0)
            out += [used, size]
    if status is not None:
        out.append(
            _gauge(
                "classroom_last_pass_duration_seconds",
                "How long the daemon's last pass took",
                status.duration_seconds,
            )
        )
        if status.assignments:
            handed = Gauge(
                "classroom_assignment_handed_out", "Students given their copy of each assignment", labels=["assignment"]
            )
            submissions = Gauge(
                "classroom_assignment_submissions",
                "Active students' submissions of each assignment by verdict (not yet: not collected)",
                labels=["assignment", "status"],
            )
            returned = Gauge(
                "classroom_assignment_feedback_returned",
                "Students whose feedback on each assignment reached them",
                labels=["assignment"],
            )
            for name, found in sorted(status.assignments.items()):
                handed.add_metric([name], found.get("handed_out", 0))
                returned.add_metric([name], found.get("feedback_returned", 0))
                for verdict in ("on time", "late", "missing", "not yet"):
                    submissions.add_metric([name, verdict], found.get(verdict, 0))
            out += [handed, submissions, returned]
        result = Gauge("classroom_last_pass_result", "1 for the last pass's result", labels=["result"])
        result.add_metric([status.result], 1)
        out.append(result)
        actions = Gauge(
            "classroom_last_pass_actions", "Actions the last pass planned, by kind and op", labels=["kind", "op"]
        )
        for (kind, op), count in sorted(Counter((a["kind"], a["op"]) for a in status.planned_actions()).items()):
            actions.add_metric([kind, op], count)
        out.append(actions)
        out.append(
            _gauge(
                "classroom_last_pass_drift",
                "Actions repairing changes made outside reconcile",
                status.drift(),
            )
        )
        out.append(
            _gauge(
                "classroom_last_pass_failed",
                "People or parts whose actions failed or are blocked",
                len(status.failed or {}),
            )
        )
        out.append(
            _gauge("classroom_last_pass_waiting", "Changes waiting for a volume in use", len(status.waiting or {}))
        )
        free = Gauge("classroom_disk_free_bytes", "Free space where the classroom writes", labels=["what", "path"])
        total = Gauge("classroom_disk_size_bytes", "Size of those filesystems", labels=["what", "path"])
        for disk in status.disks or ():
            free.add_metric([disk.what, disk.path], disk.free)
            total.add_metric([disk.what, disk.path], disk.size)
        out += [free, total]
    return out


def _gauge(name: str, text: str, value: float) -> Gauge:
    return Gauge(name, text, value=value)
