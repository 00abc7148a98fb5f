"""hub.extra_config_dir: the admin's own JupyterHub options, loaded after ours, on a real hub.

The extra files swap PAM for JupyterHub's DummyAuthenticator (one shared password): the stand-in for an
OAuth, LTI or LDAP authenticator, whose identity provider cannot run here.  What must hold whatever the
authenticator: only classroom.yaml's active people get in (a stranger and a disabled student are refused,
with the right password), nobody becomes admin (although the extra file asks for it), each person lands in
their role's hub group (which the teacher role follows), the files load in name order, and a file others
could write stops the hub from starting.
"""

import subprocess

import pytest

from hostkit import host_ready, make_classroom
from hubkit import Hub, add_hub, hub_ready, tear_down, xsrf
from imagekit import image_unavailable

REASON = host_ready() or hub_ready() or image_unavailable()
pytestmark = pytest.mark.skipif(bool(REASON), reason=str(REASON))

PASSWORD = "the-provider-said-yes"


@pytest.fixture(scope="module")
def env():
    room = make_classroom()
    extra = room.root / "jupyterhub_config.d"
    extra.mkdir(mode=0o755)
    (extra / "10-authenticator.py").write_text(
        'c.JupyterHub.authenticator_class = "dummy"\n'
        'c.DummyAuthenticator.password = "overridden-by-the-next-file"\n'
        'c.Authenticator.admin_users = {"' + room.user("tea") + '"}  # reconcile keeps nobody admin\n'
    )
    (extra / "20-password.py").write_text(f'c.DummyAuthenticator.password = "{PASSWORD}"\n')
    add_hub(room, extra_config_dir=str(extra))
    room.write([{"username": "ann"}, {"username": "bob", "status": "disabled"}], admins=[{"username": "tea"}])
    room.cli()
    hub = Hub(room)
    hub.start()
    try:
        yield room, hub, extra
    finally:
        tear_down(hub, room)


def test_only_active_members_get_in_in_their_role_s_group_never_admin(env):
    room, hub, _ = env
    assert hub.login(room.user("ann"), PASSWORD) is not None
    assert hub.login(room.user("ann"), "overridden-by-the-next-file") is None  # the files load in name order
    assert hub.login(room.user("bob"), PASSWORD) is None  # disabled in classroom.yaml
    assert hub.login("mallory", PASSWORD) is None  # the provider knows her; the classroom does not
    teacher = hub.login(room.user("tea"), PASSWORD)
    assert teacher is not None
    ann = hub.api("GET", f"/users/{room.user('ann')}").json()
    tea = hub.api("GET", f"/users/{room.user('tea')}").json()
    assert ann["groups"] == [f"{room.name}-students"] and ann["admin"] is False
    assert tea["groups"] == [f"{room.name}-teachers"] and tea["admin"] is False
    assert "admin" not in tea["roles"]
    scopes = teacher.get(f"{hub.url}/hub/api/user", headers=xsrf(teacher), timeout=10).json()["scopes"]
    assert f"list:users!group={room.name}-students" in scopes  # the teacher role, through the group
    assert not any(scope.startswith("admin") for scope in scopes)
    assert hub.api("GET", "/users/mallory").status_code == 404


def test_a_file_others_can_write_keeps_the_hub_from_starting(env):
    room, _, extra = env
    (extra / "30-loose.py").write_text("# anyone could have written this\n")
    (extra / "30-loose.py").chmod(0o666)
    try:
        done = subprocess.run(Hub(room).command(), capture_output=True, text=True, timeout=120)
        assert done.returncode != 0
        out = done.stdout + done.stderr
        assert "30-loose.py is owned by uid 0 with mode 0666" in out and "chmod go-w" in out, out[-2000:]
    finally:
        (extra / "30-loose.py").unlink()
