"""The packaged JupyterHub configuration, built from site.yaml + classroom.yaml (no hub started)."""

from pathlib import Path

from traitlets.config import Config

from reconciler.config.load import load_site
from reconciler.hub import config

ROOT = Path(__file__).resolve().parents[2]


def build(tmp_path):
    (tmp_path / "token").write_text("secret-token\n")
    site_file = tmp_path / "site.yaml"
    site_file.write_text("state_dir: state\nhub:\n  token_file: token\n  subnet: 172.31.240.0/24\n"
                         "  cull_idle_timeout: 1800\n  proxy_api_port: 18001\n")
    site = load_site(site_file)
    c = Config()
    config.configure(c, site, ROOT / "examples" / "classroom.yaml")
    return c, site


def test_access_follows_the_managed_groups(tmp_path):
    c, _ = build(tmp_path)
    assert c.JupyterHub.authenticator_class == "reconciler.hub.auth.ClassroomAuthenticator"
    assert c.ClassroomAuthenticator.teachers_group == "python-101-teachers"  # mirrored for the teacher role
    assert c.PAMAuthenticator.allowed_groups == {"python-101-students", "python-101-teachers"}
    assert c.PAMAuthenticator.admin_groups == {"python-101-teachers"}
    assert c.PAMAuthenticator.check_account is True
    assert c.Authenticator.admin_users == set()


def test_services_have_least_privilege_and_no_admin_flag(tmp_path):
    c, _ = build(tmp_path)
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert services["reconciler"] == {"name": "reconciler", "api_token": "secret-token"}
    assert "admin" not in services["idle-culler"] and "--timeout=1800" in services["idle-culler"]["command"]
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert set(roles["reconciler"]["scopes"]) == {"list:users", "read:users", "read:servers", "delete:servers",
                                                 "delete:users"}
    assert not any(scope.startswith("admin") for role in roles.values() for scope in role["scopes"])


def test_teacher_service_is_registered_with_its_custom_scope(tmp_path):
    c, _ = build(tmp_path)
    service = {s["name"]: s for s in c.JupyterHub.services}["classroom"]
    assert service["url"] == "http://127.0.0.1:8002"  # loopback: reached only through the proxy
    assert service["command"][1:4] == ["-m", "reconciler", "api"]
    assert service["oauth_client_allowed_scopes"] == ["custom:classroom:manage"]
    assert "custom:classroom:manage" in c.JupyterHub.custom_scopes
    teacher = {r["name"]: r for r in c.JupyterHub.load_roles}["classroom-teacher"]
    assert teacher["groups"] == ["python-101-teachers"]
    assert set(teacher["scopes"]) == {"custom:classroom:manage", "access:services!service=classroom"}


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
