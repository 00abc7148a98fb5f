"""The swarm service a student's server becomes (hub/swarm.py's service_spec), built offline from examples/.

The same checks as the real swarm test (tests/swarm/) on the spec itself: the quota as limits and as
reservations (hub.swarm.reserve_memory / reserve_cpu), the hardening, the home and course folder as `local` volumes mounting the
manager's NFS exports (or binding the paths every worker sees), the identity files as swarm configs, a host-mode port, workers only.
"""

from pathlib import Path

import pytest

from reconciler.config.load import load_classroom, load_site
from reconciler.core.desired import resolve
from reconciler.host.volumes import layout_for
from reconciler.hub.spawner import IN_CONTAINER, identity
from reconciler.hub.swarm import NFS_OPTIONS, config_name, service_spec, volume_name

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024**2


@pytest.fixture
def example():
    site = load_site(ROOT / "examples" / "site-swarm.yaml")
    classroom = load_classroom(ROOT / "examples" / "classroom.yaml", site)
    return site, classroom


def settings_for(site, classroom, username, teacher_gid=None):
    """What container_settings() returns, without the account and mount lookups it makes on a real host."""
    member = resolve(classroom, site.paths, layout_for(site)).member(username)
    home = f"/home/{username}"
    return {
        "member": member,
        "home": home,
        "mounts": [
            {"type": "bind", "source": str(site.paths.home(username)), "target": home, "read_only": False},
            {"type": "bind", "source": str(site.shared_dir), "target": f"{home}/shared", "read_only": True},
            {"type": "bind", "source": "/x/passwd", "target": IN_CONTAINER["passwd"], "read_only": True},
        ],
        "identity": identity(username, member.name, 2001, 2001, username, ("c-students", 3000), False),
        "create": {
            "user": "2001:2001",
            "working_dir": home,
            "hostname": classroom.name,
            "labels": {"org.classroom.classroom": classroom.name, "org.classroom.user": username},
        },
        "host": {
            "pids_limit": site.hub.pids_limit,
            "group_add": [str(teacher_gid)] if teacher_gid else [],
            "log_config": {"type": "json-file", "config": {"max-size": "10240k", "max-file": "3"}},
        },
    }


def test_a_student_s_service(example):
    site, classroom = example
    settings = settings_for(site, classroom, "jdoe")
    member = settings["member"]
    spec = service_spec(
        site,
        classroom,
        settings,
        image="classroom-student:latest",
        args=["jupyterhub-singleuser"],
        env={"HOME": "/home/jdoe"},
        configs={"passwd": ("id-p", "name-p"), "group": ("id-g", "name-g")},
        port=8888,
    )
    task = spec["task_template"]
    limits, reserved = task["Resources"]["Limits"], task["Resources"]["Reservations"]
    assert limits == {"MemoryBytes": member.memory, "NanoCPUs": int(member.cpu * 1e9), "Pids": 512}
    assert reserved == {"MemoryBytes": int(member.memory * 0.25), "NanoCPUs": int(member.cpu * 0.05 * 1e9)}
    container = task["ContainerSpec"]
    assert container["User"] == "2001:2001" and container["ReadOnly"] is True
    assert container["CapabilityDrop"] == ["ALL"] and "Groups" not in container
    # no privileged ports for a student's processes: NFS (sec=sys) trusts the UIDs requests from those claim
    assert container["Sysctls"] == {"net.ipv4.ip_unprivileged_port_start": "1024"}
    mounts = {m["Target"]: m for m in container["Mounts"]}
    home, shared = mounts["/home/jdoe"], mounts["/home/jdoe/shared"]
    nfs = {"type": "nfs", "o": f"addr=10.0.5.10,{NFS_OPTIONS}", "device": ":/srv/classroom/homes/jdoe"}
    assert home["Type"] == "volume" and home["Source"] == volume_name(classroom.name, "jdoe", nfs)
    assert home["VolumeOptions"] == {
        "DriverConfig": {"Name": "local", "Options": nfs},
        "NoCopy": True,
        "Labels": {"org.classroom.classroom": classroom.name},
    }
    assert "nosuid" in nfs["o"] and "nodev" in nfs["o"] and "hard" in nfs["o"]
    assert shared["ReadOnly"] is True and shared["VolumeOptions"]["DriverConfig"]["Options"] == {
        **nfs,
        "device": ":/srv/classroom/shared",
    }
    assert mounts["/tmp"]["TmpfsOptions"] == {"SizeBytes": 256 * MiB, "Mode": 0o1777}
    assert "/etc/passwd" not in mounts  # a swarm config instead: the file exists on the manager only
    assert [(c["ConfigID"], c["File"]["Name"], c["File"]["Mode"]) for c in container["Configs"]] == [
        ("id-p", "/etc/passwd", 0o444),
        ("id-g", "/etc/group", 0o444),
    ]
    assert task["RestartPolicy"]["Condition"] == "none"
    assert task["Placement"] == {"Constraints": ["node.role == worker"]}
    assert task["LogDriver"] == {"Name": "json-file", "Options": {"max-size": "10240k", "max-file": "3"}}
    assert spec["endpoint_spec"]["Ports"] == [
        {"Protocol": "tcp", "PublishedPort": None, "TargetPort": 8888, "PublishMode": "host"}
    ]
    assert spec["labels"] == {"org.classroom.classroom": classroom.name, "org.classroom.user": "jdoe"}


def test_with_homes_shared_each_worker_binds_the_same_path(example):
    site, classroom = example
    swarm = site.hub.swarm.model_copy(update={"homes": "shared"})
    site = site.model_copy(update={"hub": site.hub.model_copy(update={"swarm": swarm})})
    spec = service_spec(
        site, classroom, settings_for(site, classroom, "jdoe"), image="i", args=[], env={}, configs={}, port=8888
    )
    mounts = {m["Target"]: m for m in spec["task_template"]["ContainerSpec"]["Mounts"]}
    bind = {"type": "none", "o": "bind", "device": "/srv/classroom/homes/jdoe"}
    assert mounts["/home/jdoe"]["VolumeOptions"]["DriverConfig"]["Options"] == bind
    # a worker keeps a named volume's first options: another way of mounting is another volume
    assert mounts["/home/jdoe"]["Source"] != volume_name(classroom.name, "jdoe", {**bind, "type": "nfs"})


def test_a_teacher_s_service_holds_the_role_group_and_writes_the_course_folder(example):
    site, classroom = example
    settings = settings_for(site, classroom, "mrossi", teacher_gid=3001)
    settings["mounts"][1]["read_only"] = False
    spec = service_spec(site, classroom, settings, image="i", args=[], env={}, configs={}, port=8888)
    container = spec["task_template"]["ContainerSpec"]
    assert container["Groups"] == ["3001"]
    assert {m["Target"]: m.get("ReadOnly", False) for m in container["Mounts"]}["/home/mrossi/shared"] is False


def test_config_names_follow_their_content():
    one = config_name("py", "jdoe", "jupyter_server_config.json", "a")
    assert one == config_name("py", "jdoe", "jupyter_server_config.json", "a")
    assert one != config_name("py", "jdoe", "jupyter_server_config.json", "b")
    assert one.startswith("jupyter-py-jdoe-jupyter-server-config-json-")


@pytest.mark.parametrize(
    "hub, problem",
    [
        ("spawner: swarm", "spawner: swarm needs a swarm: section"),
        ("swarm: {address: 10.0.5.10, workers: [{address: 10.0.5.11}]}", "swarm: is set but spawner is not swarm"),
        ("spawner: swarm\n  swarm: {address: 10.0.5.10, workers: []}", "at least 1 item"),
        ("spawner: swarm\n  swarm: {address: hub.school, workers: [{address: 10.0.5.11}]}", "not an IPv4 address"),
    ],
)
def test_swarm_settings_are_checked(tmp_path, hub, problem):
    from reconciler.config.load import InvalidFile

    site_file = tmp_path / "site.yaml"
    site_file.write_text(f"hub:\n  token_file: token\n  {hub}\n")
    with pytest.raises(InvalidFile) as error:
        load_site(site_file)
    assert problem in str(error.value)


def test_status_lines_for_the_swarm():
    from reconciler.core.report import render_swarm

    nodes = [
        {"hostname": "w1", "address": "10.0.5.11", "role": "worker", "state": "down", "availability": "active"},
        {"hostname": "hub", "address": "10.0.5.10", "role": "manager", "state": "ready", "availability": "active"},
    ]
    assert render_swarm(nodes, ["10.0.5.11", "10.0.5.12"]) == [
        "swarm: manager hub (10.0.5.10): ready, active",
        "swarm: worker w1 (10.0.5.11): down, active  NOT USABLE",
        "swarm: worker 10.0.5.12 is in site.yaml but not in the swarm (examples/install.sh --worker)",
    ]
    assert render_swarm(None, [])[0].startswith("swarm: the manager cannot be asked")
