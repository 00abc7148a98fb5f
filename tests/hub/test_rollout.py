"""A new student image on a real hub: `reconcile status` and the teacher API say which running servers use an older
image, and `reconcile image rollout` restarts the idle ones onto the new one.

The classroom's hub.image is a tag of its own; the "new image" is the test image with one more label (docker
build, no registry), tagged in its place while servers run.
"""

import io
import json

import docker
import pytest

from hostkit import host_ready, make_classroom
from hubkit import Hub, add_hub, hub_ready, tear_down, wait_for
from imagekit import TAG, build_test_image
import contextlib

pytestmark = pytest.mark.skipif(bool(host_ready() or hub_ready()), reason=str(host_ready() or hub_ready()))


def password(room, short):
    return json.loads((room.paths.outbox / f"{room.user(short)}.json").read_text())["password"]


def running_image(hub, room, username):
    found = docker.from_env().containers.list(
        filters={"label": [f"org.classroom.classroom={room.name}", f"org.classroom.user={username}"]}
    )
    return found[0].attrs["Image"] if found else None


@pytest.fixture
def room_with_servers():
    client = docker.from_env()
    build_test_image()
    room, hub = make_classroom(), None
    tag = f"classroom-rollout-{room.name}:latest"
    newer = None
    try:  # set-up inside the cleanup's reach
        client.images.get(TAG).tag(tag)
        add_hub(room, image=tag)
        room.write([{"username": "ann"}, {"username": "bob"}])
        assert room.cli().returncode == 1  # the hub is not up yet
        hub = Hub(room)
        hub.start()
        for short in ("ann", "bob"):
            assert hub.login(room.user(short), password(room, short)) is not None
            assert hub.api("POST", f"/users/{room.user(short)}/server").status_code in (201, 202)
        wait_for(
            lambda: all(
                (hub.api("GET", f"/users/{room.user(s)}").json().get("servers", {}).get("") or {}).get("ready")
                for s in ("ann", "bob")
            ),
            240,
            "both servers ready",
        )
        newer, _ = client.images.build(
            fileobj=io.BytesIO(f"FROM {tag}\nLABEL rollout=2\n".encode()), tag=tag, pull=False, rm=True
        )
        yield room, hub, newer.id
    finally:
        tear_down(hub, room)
        for name in (tag,):
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(name, force=True)


def test_status_names_the_old_servers_and_rollout_moves_the_idle_ones(room_with_servers):
    room, hub, newer = room_with_servers
    ann, bob = room.user("ann"), room.user("bob")
    assert running_image(hub, room, ann) != newer

    status = room.cli("status")
    assert status.returncode == 0, status.stdout + status.stderr
    lines = {line.split()[0]: line for line in status.stdout.splitlines() if line.strip()}
    assert "(old image: restart)" in lines[ann] and "(old image: restart)" in lines[bob]
    assert "2 server(s) running, 2 on an older image" in status.stdout, status.stdout

    preview = room.cli("image", "rollout", "--idle", "0", "--dry-run")
    assert preview.returncode == 0 and f"would restart {ann}'s server" in preview.stdout, preview.stdout
    assert running_image(hub, room, ann) != newer  # a dry run restarts nothing

    done = room.cli("image", "rollout", "--idle", "0")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"restarted {ann}'s server" in done.stdout and f"restarted {bob}'s server" in done.stdout
    wait_for(
        lambda: running_image(hub, room, ann) == newer and running_image(hub, room, bob) == newer,
        240,
        "both servers on the new image",
    )
    after = room.cli("status")
    assert "old image" not in after.stdout and "older image" not in after.stdout, after.stdout
    assert "2 server(s) running" in after.stdout
    again = room.cli("image", "rollout", "--idle", "0")
    assert again.returncode == 0 and "every running server uses the image" in again.stdout, again.stdout
