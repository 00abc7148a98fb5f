"""core.metrics: the daemon's two files as gauges, in Prometheus' text format, read back with Prometheus' own
parser."""

from prometheus_client.parser import text_string_to_metric_families

from reconciler.core.metrics import families
from reconciler.core.pass_record import PassRecord
from reconciler.core.report import PersonRow
from reconciler.service.teacher import prometheus_text


def render(status, snapshot, per_person=True) -> bytes:
    """The two files' JSON, read back into their types as the service does."""
    record = (
        None
        if status is None
        else PassRecord.from_json({"format_version": 1, "time": "2026-12-07T08:00:00Z", **status})
    )
    people = (
        None
        if snapshot is None
        else [PersonRow.from_json({"account": "enabled", "uid": None, **row}) for row in snapshot["people"]]
    )
    return prometheus_text(families(record, people, per_person))


SNAPSHOT = {
    "people": [
        {
            "username": "ann",
            "role": "student",
            "status": "active",
            "volume_size": 1 << 30,
            "volume_used": 5 << 20,
            "mounted": True,
            "server": "running",
            "credentials": None,
        },
        {
            "username": "bob",
            "role": "student",
            "status": "active",
            "volume_size": 1 << 30,
            "volume_used": 0,
            "mounted": False,
            "server": "stopped",
            "credentials": "pending",
        },
        {
            "username": "old",
            "role": None,
            "status": "removed",
            "volume_size": 1 << 30,
            "volume_used": 1,
            "mounted": False,
            "server": None,
            "credentials": None,
        },
        {
            "username": "tea",
            "role": "teacher",
            "status": "active",
            "volume_size": None,
            "volume_used": None,
            "mounted": False,
            "server": None,
            "credentials": None,
        },
    ]
}
STATUS = {
    "result": "waiting",
    "duration_seconds": 0.42,
    "plan": {
        "actions": [
            {"kind": "volume", "op": "update"},
            {"kind": "account", "op": "create"},
            {"kind": "account", "op": "create"},
        ],
        "drift": [{"kind": "mount", "op": "create"}],
    },
    "failed": {"carl": "useradd failed"},
    "waiting": {"ann": "ann's server is running"},
    "disks": [{"what": "the volumes", "path": "/srv/homes", "free": 10, "size": 100, "low": False}],
}


def samples(text: bytes) -> dict:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_every_figure():
    got = samples(render(STATUS, SNAPSHOT))
    assert got[("classroom_people", (("role", "student"), ("status", "active")))] == 2
    assert got[("classroom_people", (("role", "-"), ("status", "removed")))] == 1
    assert got[("classroom_servers_running", ())] == 1
    assert got[("classroom_credentials_waiting", ())] == 1
    assert got[("classroom_volumes_not_mounted", ())] == 1  # bob; the removed person's volume is not counted
    assert got[("classroom_volume_used_bytes", (("username", "ann"),))] == 5 << 20
    assert ("classroom_volume_size_bytes", (("username", "tea"),)) not in got  # no volume: no series
    assert got[("classroom_last_pass_result", (("result", "waiting"),))] == 1
    assert got[("classroom_last_pass_duration_seconds", ())] == 0.42
    assert got[("classroom_last_pass_actions", (("kind", "account"), ("op", "create")))] == 2
    assert got[("classroom_last_pass_actions", (("kind", "mount"), ("op", "create")))] == 1
    assert got[("classroom_last_pass_drift", ())] == 1
    assert got[("classroom_last_pass_failed", ())] == 1 and got[("classroom_last_pass_waiting", ())] == 1
    assert got[("classroom_disk_free_bytes", (("path", "/srv/homes"), ("what", "the volumes")))] == 10


def test_per_person_series_can_be_turned_off_and_missing_files_give_no_series():
    got = samples(render(STATUS, SNAPSHOT, per_person=False))
    assert not any(name.startswith("classroom_volume_") for name, _ in got)
    assert samples(render(None, None)) == {}  # before the daemon's first pass


def test_the_example_dashboard_and_scrape_config_name_only_what_is_served():
    """examples/monitoring: every series the Grafana panels query is one the endpoint serves."""
    import json
    import re
    from pathlib import Path

    import yaml

    examples = Path(__file__).resolve().parents[2] / "examples" / "monitoring"
    served = {name for name, _ in samples(render(STATUS, SNAPSHOT))}
    dashboard = json.loads((examples / "grafana-dashboard.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bclassroom_[a-z_]+", target["expr"])
    }
    assert queried and queried <= served, queried - served
    scrape = yaml.safe_load((examples / "prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape["metrics_path"] == "/services/classroom/api/metrics" and scrape["authorization"]["type"] == "token"
