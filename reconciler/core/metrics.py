"""The classroom as Prometheus gauges, from the two files the daemon writes after every pass.

Pure data (the teacher service writes it in Prometheus' text format): status.json (the last pass: when, how long, its result, its plan, what failed or waits, the disks) and
snapshot.json (each person's row: state, volume, server) come in as dicts, so a scrape costs two file reads
and never observes the host.  Per-person series (volume used and size) can be turned off in site.yaml
(``metrics.per_person: false``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


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


def families(status: Mapping | None, snapshot: Mapping | None, per_person: bool = True) -> list[Gauge]:
    out: list[Gauge] = []
    people = list((snapshot or {}).get("people", []))
    if snapshot is not None:
        by_state = Gauge(
            "classroom_people", "People by role and status (classroom.yaml and the host)", labels=["role", "status"]
        )
        for (role, status_), count in sorted(Counter((p["role"] or "-", p["status"]) for p in people).items()):
            by_state.add_metric([role, status_], count)
        out.append(by_state)
        out.append(
            _gauge(
                "classroom_servers_running",
                "Student and teacher servers running (as the hub says)",
                sum(1 for p in people if p.get("server") == "running"),
            )
        )
        out.append(
            _gauge(
                "classroom_credentials_waiting",
                "New passwords not yet delivered (e-mail or slip)",
                sum(1 for p in people if p.get("credentials")),
            )
        )
        out.append(
            _gauge(
                "classroom_volumes_not_mounted",
                "Volumes of active people that are not mounted",
                sum(1 for p in people if p["status"] == "active" and p.get("volume_size") and not p.get("mounted")),
            )
        )
        if per_person:
            used = Gauge("classroom_volume_used_bytes", "Bytes used on each person's volume", labels=["username"])
            size = Gauge("classroom_volume_size_bytes", "Each person's volume size", labels=["username"])
            for person in people:
                if person.get("volume_size") is not None:
                    size.add_metric([person["username"]], person["volume_size"])
                    used.add_metric([person["username"]], person.get("volume_used") or 0)
            out += [used, size]
    if status is not None:
        out.append(
            _gauge(
                "classroom_last_pass_duration_seconds",
                "How long the daemon's last pass took",
                status.get("duration_seconds") or 0,
            )
        )
        result = Gauge("classroom_last_pass_result", "1 for the last pass's result", labels=["result"])
        result.add_metric([status.get("result", "unknown")], 1)
        out.append(result)
        plan = status.get("plan") or {}
        actions = Gauge(
            "classroom_last_pass_actions", "Actions the last pass planned, by kind and op", labels=["kind", "op"]
        )
        for (kind, op), count in sorted(Counter((a["kind"], a["op"]) for a in _planned(plan)).items()):
            actions.add_metric([kind, op], count)
        out.append(actions)
        out.append(
            _gauge(
                "classroom_last_pass_drift",
                "Actions repairing changes made outside reconcile",
                len(plan.get("drift", [])),
            )
        )
        out.append(
            _gauge(
                "classroom_last_pass_failed",
                "People or parts whose actions failed or are blocked",
                len(status.get("failed") or {}),
            )
        )
        out.append(
            _gauge(
                "classroom_last_pass_waiting", "Changes waiting for a volume in use", len(status.get("waiting") or {})
            )
        )
        free = Gauge("classroom_disk_free_bytes", "Free space where the classroom writes", labels=["what", "path"])
        total = Gauge("classroom_disk_size_bytes", "Size of those filesystems", labels=["what", "path"])
        for disk in status.get("disks") or []:
            free.add_metric([disk["what"], disk["path"]], disk["free"])
            total.add_metric([disk["what"], disk["path"]], disk["size"])
        out += [free, total]
    return out


def _planned(plan: Mapping) -> Iterable[Mapping]:
    return [*plan.get("actions", []), *plan.get("drift", [])]


def _gauge(name: str, text: str, value: float) -> Gauge:
    return Gauge(name, text, value=value)
