"""The packaged JupyterHub configuration, built from site.yaml + classroom.yaml (no hub started)."""

import os
from pathlib import Path

import pytest
from traitlets.config import Config

from reconciler.config.load import load_site
from reconciler.hub import config

ROOT = Path(__file__).resolve().parents[2]


def build(tmp_path, hub: str = "  subnet: 172.31.240.0/24\n  cull_idle_timeout: 1800\n  proxy_api_port: 18001\n"):
    """The packaged configuration for a site whose hub section is ``hub`` (plus the token file)."""
    (tmp_path / "token").write_text("secret-token\n")
    site_file = tmp_path / "site.yaml"
    site_file.write_text("state_dir: state\nhub:\n  token_file: token\n" + hub)
    site = load_site(site_file)
    c = Config()
    config.configure(c, site, ROOT / "examples" / "classroom.yaml")
    return c, site


def test_access_follows_the_managed_groups(tmp_path):
    c, _ = build(tmp_path)
    assert c.JupyterHub.authenticator_class == "reconciler.hub.auth.ClassroomAuthenticator"
    assert c.ClassroomAuthenticator.teachers_group == "python-101-teachers"  # mirrored for the teacher role
    assert c.PAMAuthenticator.allowed_groups == {"python-101-students", "python-101-teachers"}
    assert c.ClassroomAuthenticator.students_group == "python-101-students"  # what the teacher role may touch
    assert c.PAMAuthenticator.admin_groups == set()  # nobody is a hub admin, teachers included
    assert c.PAMAuthenticator.check_account is True
    assert c.Authenticator.admin_users == set()
    assert "subdomain_host" not in c.JupyterHub  # one origin unless site.yaml gives per-user subdomains


def test_services_have_least_privilege_and_no_admin_flag(tmp_path):
    c, _ = build(tmp_path)
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert services["reconciler"] == {"name": "reconciler", "api_token": "secret-token"}
    assert "admin" not in services["idle-culler"] and "--timeout=1800" in services["idle-culler"]["command"]
    # jupyterhub-idle-culler, paused during lessons: it reads the classroom's schedule
    assert services["idle-culler"]["command"][1:3] == ["-m", "reconciler.hub.culler"]
    assert "--cull-every=180" in services["idle-culler"]["command"]
    assert services["idle-culler"]["environment"]["CLASSROOM_FILE"].endswith("classroom.yaml")
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert set(roles["reconciler"]["scopes"]) == {
        "list:users",
        "read:users",
        "read:servers",
        "delete:servers",
        "delete:users",
        "servers!group=python-101-students",
    }
    assert not any(scope.startswith("admin") for role in roles.values() for scope in role["scopes"])


def test_teacher_service_is_registered_with_its_custom_scope(tmp_path):
    c, _ = build(tmp_path)
    service = {s["name"]: s for s in c.JupyterHub.services}["classroom"]
    assert service["url"] == "http://127.0.0.1:8002"  # loopback: reached only through the proxy
    assert service["command"][1:4] == ["-m", "reconciler", "api"]
    assert service["oauth_client_allowed_scopes"] == ["custom:classroom:manage"]
    # the hub's services get a minimal environment: the configuration cache's place is passed on
    assert service["environment"]["RECONCILE_CACHE"] == os.environ["RECONCILE_CACHE"]


def test_the_services_look_at_the_same_docker_and_proxies_as_the_hub(tmp_path, monkeypatch):
    """JupyterHub starts services with a minimal environment: the teacher service and the culler must still reach
    the Docker engine and the proxies the hub and the daemon use."""
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2376")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    c, _ = build(tmp_path)
    for service in c.JupyterHub.services:
        if "command" in service:
            assert service["environment"]["DOCKER_HOST"] == "tcp://127.0.0.1:2376", service["name"]
            assert service["environment"]["HTTPS_PROXY"] == "http://127.0.0.1:3128"
            assert "NO_PROXY" not in service["environment"]
    assert "custom:classroom:manage" in c.JupyterHub.custom_scopes
    teacher = {r["name"]: r for r in c.JupyterHub.load_roles}["classroom-teacher"]
    assert teacher["groups"] == ["python-101-teachers"]
    students = "group=python-101-students"
    # see and start/stop the students' servers, use the teacher page; on one origin never open a server
    assert set(teacher["scopes"]) == {
        "custom:classroom:manage",
        "custom:classroom:metrics",
        "access:services!service=classroom",
        f"list:users!{students}",
        f"read:users!{students}",
        f"servers!{students}",
    }


def test_network_layout(tmp_path):
    c, site = build(tmp_path)
    assert c.JupyterHub.hub_bind_url == "http://172.31.240.1:8081"  # the bridge gateway only
    assert c.ConfigurableHTTPProxy.api_url == "http://127.0.0.1:18001"  # loopback only
    assert site.hub.api_endpoint == "http://172.31.240.1:8081/hub/api"
    assert c.DockerSpawner.remove is True and c.DockerSpawner.pull_policy == "never"
    assert c.Spawner.default_url == "/lab"
    assert c.JupyterHub.cleanup_servers is False


def test_storm_limits_grow_with_the_class(tmp_path):
    c, _ = build(tmp_path)
    assert c.JupyterHub.concurrent_spawn_limit >= 100
    assert c.Spawner.start_timeout >= 300 and c.Spawner.http_timeout == c.Spawner.start_timeout


def test_example_site_is_valid():
    site = load_site(ROOT / "examples" / "site.yaml")
    assert site.hub is not None and site.hub.image == "classroom-student:latest"
    assert site.hub.shared_dir == Path("/srv/classroom/shared")


def test_the_container_knows_its_person_and_nobody_else():
    from reconciler.hub.spawner import identity

    files = identity("ann", "Ann Lee", 1001, 1001, "ann", ("py101-students", 2000), teacher=False)
    assert files["passwd"].splitlines()[-1] == "ann:x:1001:1001:Ann Lee:/home/ann:/bin/bash"
    assert [line.split(":")[0] for line in files["passwd"].splitlines()] == ["root", "nobody", "ann"]
    assert files["group"].splitlines()[-2:] == ["ann:x:1001:", "py101-students:x:2000:"]
    teacher = identity("tom", "Tom", 1002, 1002, "tom", ("py101-teachers", 2001), teacher=True)
    assert teacher["group"].splitlines()[-1] == "py101-teachers:x:2001:tom"  # the group its container holds


def test_egress_rules_follow_the_policy():
    from reconciler.config.site import PRIVATE_RANGES, HubSettings
    from reconciler.core.firewall import chains, reaches

    internet = chains(HubSettings(token_file="t", network="n"))["egress"]
    assert internet.parent == "DOCKER-USER" and internet.jump.startswith("-A DOCKER-USER -i clsrm-")
    assert internet.rules[0].endswith("--ctstate RELATED,ESTABLISHED -j RETURN")
    assert [rule.split()[3] for rule in internet.rules[1:]] == list(PRIVATE_RANGES)
    assert all(rule.endswith("-j REJECT --reject-with icmp-admin-prohibited") for rule in internet.rules[1:])

    listed = chains(HubSettings(token_file="t", network="n", egress=["10.1.2.3:3128", "192.168.5.0/24:53/udp"]))
    assert listed["egress"].rules[1:] == (
        f"-A {listed['egress'].name} -d 10.1.2.3/32 -p tcp -m tcp --dport 3128 -j RETURN",
        f"-A {listed['egress'].name} -d 192.168.5.0/24 -p udp -m udp --dport 53 -j RETURN",
        f"-A {listed['egress'].name} -j REJECT --reject-with icmp-admin-prohibited",
    )
    mirror = HubSettings(token_file="t", egress={"policy": "internet", "allow": ["10.9.9.9"]})
    assert chains(mirror)["egress"].rules[1] == f"-A {chains(mirror)['egress'].name} -d 10.9.9.9/32 -j RETURN"
    assert "except 10.9.9.9/32" in reaches(mirror)[1]
    assert reaches(HubSettings(token_file="t", egress="none"))[1] == "no other address (egress: none)"


def test_the_servers_own_networks_are_refused_like_the_private_ranges():
    """A LAN numbered in public space is the school's LAN all the same; one inside a private range or the students'
    own bridge adds no rule; none of it with egress: none (everything is refused there anyway)."""
    from reconciler.config.site import PRIVATE_RANGES, HubSettings
    from reconciler.core.firewall import chains, reaches

    hub = HubSettings(token_file="t", network="n", subnet="198.18.240.0/24")
    seen = ("203.0.113.0/24", "10.1.0.0/16", "198.18.240.0/24", "192.0.2.0/25", "192.0.2.0/25")
    egress = chains(hub, seen)["egress"]
    refused = [rule.split()[3] for rule in egress.rules[1:]]
    assert refused == [*PRIVATE_RANGES, "192.0.2.0/25", "203.0.113.0/24"]
    assert "nor the networks this server is on (192.0.2.0/25, 203.0.113.0/24)" in reaches(hub, seen)[1]
    closed = HubSettings(token_file="t", network="n", egress="none")
    assert chains(closed, seen)["egress"].rules == chains(closed)["egress"].rules


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "example.org", "10.0.0.1:0", "10.0.0.1:80/icmp", "::1"])
def test_egress_entries_are_checked(bad):
    from pydantic import ValidationError

    from reconciler.config.site import HubSettings

    with pytest.raises(ValidationError):
        HubSettings(token_file="t", egress=[bad])


def test_per_user_subdomains_let_teachers_open_students_servers(tmp_path):
    (tmp_path / "token").write_text("t\n")
    site_file = tmp_path / "site.yaml"
    site_file.write_text("hub:\n  token_file: token\n  subdomain_host: https://hub.school.example\n")
    c = Config()
    config.configure(c, load_site(site_file), ROOT / "examples" / "classroom.yaml")
    assert c.JupyterHub.subdomain_host == "https://hub.school.example"
    (teacher,) = [r for r in c.JupyterHub.load_roles if r["name"] == "classroom-teacher"]
    assert "access:servers!group=python-101-students" in teacher["scopes"]
    assert not any(
        s.startswith(("admin", "tokens", "access:servers!user", "access:servers!group=python-101-t"))
        or s == "access:servers"
        for s in teacher["scopes"]
    )


def test_the_classroom_groups_are_denied_ssh(tmp_path):
    from reconciler.hub.launch import deny_ssh

    assert deny_ssh("py101", tmp_path / "absent") == "no sshd"
    assert deny_ssh("py101", tmp_path, tmp_path / "no.pid") == "written (sshd is not running)"
    lines = (tmp_path / "classroom-py101.conf").read_text().splitlines()
    assert lines[1:3] == ["Match Group py101-students,py101-teachers", "    DenyUsers *"]
    assert deny_ssh("py101", tmp_path, tmp_path / "no.pid") == "already"


def test_the_hub_config_for_the_swarm(tmp_path):
    c, site = build(tmp_path, "  spawner: swarm\n  swarm: {address: 10.0.5.10, workers: [{address: 10.0.5.11}]}\n")
    assert site.hub.swarm.workers[0].endpoint == "ssh://root@10.0.5.11"
    assert c.JupyterHub.spawner_class == "reconciler.hub.swarm.ClassroomSwarmSpawner"
    # the workers' servers call the hub API on the manager's cluster address, not on a local bridge
    assert c.JupyterHub.hub_bind_url == "http://10.0.5.10:8081" == c.JupyterHub.hub_connect_url
    assert site.hub.api_endpoint == "http://10.0.5.10:8081/hub/api"
    assert c.DockerSpawner.pull_policy == "skip" and c.DockerSpawner.use_internal_ip is False
    assert c.DockerSpawner.cmd == ["jupyterhub-singleuser"]  # the manager need not hold the image
    assert "network_name" not in c.DockerSpawner


def test_a_server_keeps_the_image_own_path_after_the_students_local_bin():
    """A published image keeps its programs elsewhere (docker-stacks: /opt/conda/bin): its own PATH is kept."""
    from reconciler.hub.spawner import DEFAULT_PATH, image_path

    assert (
        image_path(["LANG=C.UTF-8", "PATH=/opt/conda/bin:/usr/local/bin:/usr/bin:/bin"])
        == "/opt/conda/bin:/usr/local/bin:/usr/bin:/bin"
    )
    assert image_path(["LANG=C.UTF-8"]) == image_path(None) == image_path(["PATH="]) == DEFAULT_PATH


def test_pull_at_start_is_one_command_run_as_the_student_bounded_in_time():
    from reconciler.config.classroom import CourseRepo
    from reconciler.hub.spawner import pull_at_start

    class Room:
        course_repo = CourseRepo(url="https://git.school.example/py/material.git", pull_at_start=True)

    assert pull_at_start(Room, "/home/ann") == (
        "timeout 120 gitpuller https://git.school.example/py/material.git main /home/ann/material"
    )
    Room.course_repo = CourseRepo(url="https://git.school.example/py/material.git")
    assert pull_at_start(Room, "/home/ann") is None  # only the link
    Room.course_repo = None
    assert pull_at_start(Room, "/home/ann") is None


def test_the_embedded_database_commits_to_a_write_ahead_log(tmp_path):
    from jupyterhub import orm
    from sqlalchemy import text

    c, site = build(tmp_path)
    assert c.JupyterHub.db_url == f"sqlite:///{site.state_dir / 'jupyterhub.sqlite'}"
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    session = orm.new_session_factory(url, **config.database_settings(url))()  # as JupyterHub makes it
    assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    assert session.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
    assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1  # JupyterHub's own setting still applies
    session.close()
    c, _ = build(tmp_path, "  db_url: postgresql://hub@db.school/jupyterhub\n")
    assert c.JupyterHub.db_kwargs == {}  # another database: its own settings


def test_one_function_per_concern_builds_the_same_configuration(tmp_path):
    """configure() is the update_* functions in order (then the operator's files): each sets only its own part."""
    c, site = build(tmp_path)
    parts = Config()
    classroom = config.load_classroom(ROOT / "examples" / "classroom.yaml", site)
    config.update_network(parts, site.hub)
    config.update_state(parts, site)
    config.update_auth(parts, classroom.name)
    config.update_tls(parts, site.hub)
    config.update_limits(parts, classroom)
    config.update_spawner(parts, site.hub, classroom.name, ROOT / "examples" / "classroom.yaml")
    config.update_services(parts, site.hub, ROOT / "examples" / "classroom.yaml")
    config.update_roles(parts, classroom.name, False)
    assert parts == c
    auth = Config()
    config.update_auth(auth, "py101")
    assert set(auth) == {"JupyterHub", "ClassroomAuthenticator", "PAMAuthenticator", "Authenticator"}
    assert set(auth.JupyterHub) == {"authenticator_class"}


def extra(tmp_path, files: dict[str, str]):
    """The packaged configuration with these files in hub.extra_config_dir."""
    directory = tmp_path / "jupyterhub_config.d"
    directory.mkdir(mode=0o755)
    for name, text in files.items():
        (directory / name).write_text(text)
    return build(tmp_path, f"  extra_config_dir: {directory}\n")[0]


def test_extra_files_load_as_sub_configs_in_name_order(tmp_path):
    """Each file is a traitlets sub-config: what it sets replaces ours, later files win, .append extends our
    lists; nobody becomes admin and another authenticator goes through the classroom's gate."""
    c = extra(
        tmp_path,
        {
            "20-password.py": 'c.DummyAuthenticator.password = "second"\n',
            "10-auth.py": 'c.JupyterHub.authenticator_class = "dummy"\n'
            'c.DummyAuthenticator.password = "first"\n'
            'c.Authenticator.admin_users = {"tea"}\n'
            'c.JupyterHub.services.append({"name": "announce", "url": "http://127.0.0.1:8009"})\n',
            "notes.txt": "c.JupyterHub.bind_url = 'http://0.0.0.0:1'\n",  # *.py only
        },
    )
    assert c.JupyterHub.authenticator_class == "dummy" and c.DummyAuthenticator.password == "second"
    assert [s["name"] for s in c.JupyterHub.services] == ["idle-culler", "reconciler", "classroom", "announce"]
    assert c.JupyterHub.bind_url == "http://127.0.0.1:8000"
    assert c.Authenticator.admin_users == set()
    assert type(c.Authenticator.post_auth_hook).__name__ == "ClassroomGate" and c.Authenticator.allow_all is True


def test_the_packaged_file_hands_traitlets_load_subconfig_on(tmp_path, monkeypatch):
    """As `jupyterhub -f` reads it: the operator's file is merged by the config file's own load_subconfig."""
    from jupyterhub.app import JupyterHub

    directory = tmp_path / "jupyterhub_config.d"
    directory.mkdir(mode=0o755)
    (directory / "10-announce.py").write_text('c.JupyterHub.template_vars = {"announcement": "Lab 3 today"}\n')
    (tmp_path / "token").write_text("t\n")
    site_file = tmp_path / "site.yaml"
    site_file.write_text(f"state_dir: state\nhub:\n  token_file: token\n  extra_config_dir: {directory}\n")
    monkeypatch.setenv("RECONCILE_SITE", str(site_file))
    monkeypatch.setenv("RECONCILE_CLASSROOM", str(ROOT / "examples" / "classroom.yaml"))
    app = JupyterHub()
    app.load_config_file(str(config.CONFIG_FILE))
    assert app.config.JupyterHub.template_vars == {"announcement": "Lab 3 today"}
    assert app.config.JupyterHub.authenticator_class == config.OUR_AUTHENTICATOR


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("x = 1\nimport no_such_authenticator\n", "10-bad.py, line 2: ModuleNotFoundError: No module named"),
        ("c.JupyterHub.bind_url = (\n", "10-bad.py, line 1: SyntaxError:"),
    ],
)
def test_an_error_in_an_extra_file_names_the_file_and_line(tmp_path, text, said):
    with pytest.raises(SystemExit) as stopped:
        extra(tmp_path, {"10-bad.py": text})
    assert str(stopped.value).startswith("hub.extra_config_dir: ") and said in str(stopped.value)


def test_an_extra_file_others_can_write_is_refused_before_any_runs(tmp_path):
    directory = tmp_path / "jupyterhub_config.d"
    directory.mkdir(mode=0o755)
    (directory / "10-first.py").write_text("open(__file__ + '.ran', 'w').close()\n")
    (directory / "20-loose.py").write_text("")
    (directory / "20-loose.py").chmod(0o666)
    with pytest.raises(SystemExit) as stopped:
        build(tmp_path, f"  extra_config_dir: {directory}\n")
    said = str(stopped.value)
    assert f"20-loose.py is owned by uid {os.geteuid()} with mode 0666" in said and "chmod go-w" in said
    assert not (directory / "10-first.py.ran").exists()
