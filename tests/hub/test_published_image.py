"""A published image in the style of Jupyter's docker-stacks (quay.io/jupyter/*), on a real hub: no registry here,
so a local stand-in that behaves the same in what matters to the spawner.

What the stand-in copies from docker-stacks: a default user `jovyan` (uid 1000) with /home/jovyan as its home and
working directory, the programs outside the usual PATH (/opt/conda/bin, set by the image's ENV PATH), and the start
scripts (ENTRYPOINT tini + start.sh, CMD start-notebook.py, which runs jupyterhub-singleuser under a hub).  The
spawner still runs it as the student's own UID with their volume as HOME, a read-only root and /tmp on tmpfs; the
image's own PATH must be kept, or jupyterhub-singleuser is not found.
"""

import io

import docker
import pytest

from hostkit import host_ready, make_classroom
from hubkit import add_hub, first_login_with_server, hub_ready, running_hub
from imagekit import TAG, build_test_image

pytestmark = pytest.mark.skipif(bool(host_ready() or hub_ready()), reason=str(host_ready() or hub_ready()))

START_SH = r"""#!/bin/bash
# docker-stacks' start.sh, in what concerns the spawner: root would switch to NB_USER; any other UID is run as it is,
# its passwd entry added only where /etc/passwd is writable (a read-only root: the spawner's own entry is there)
set -e
if [ "$(id -u)" = 0 ]; then echo "start.sh: run as root: would chown and switch to jovyan" >&2; exit 1; fi
if ! whoami >/dev/null 2>&1 && [ -w /etc/passwd ]; then echo "jovyan:x:$(id -u):$(id -g)::/home/jovyan:/bin/bash" >> /etc/passwd; fi
for hook in /usr/local/bin/before-notebook.d/*; do [ -e "$hook" ] && . "$hook"; done
exec "$@"
"""
START_NOTEBOOK = r"""#!/usr/bin/python3
# docker-stacks' start-notebook.py: under JupyterHub, the single-user server; else plain JupyterLab
import os, sys
command = ["jupyterhub-singleuser"] if "JUPYTERHUB_API_TOKEN" in os.environ else ["jupyter", "lab"]
os.execvp(command[0], command + sys.argv[1:])
"""
DOCKERFILE = f"""FROM {TAG}
RUN mkdir -p /opt/conda/bin /usr/local/bin/before-notebook.d /home/jovyan \\
 && mv /usr/local/bin/jupyterhub-singleuser /usr/local/bin/jupyter /usr/local/bin/jupyter-* /opt/conda/bin/ \\
 && echo 'jovyan:x:1000:100::/home/jovyan:/bin/bash' >> /etc/passwd && chown 1000:100 /home/jovyan
COPY start.sh start-notebook.py /usr/local/bin/
RUN chmod 755 /usr/local/bin/start.sh /usr/local/bin/start-notebook.py
ENV PATH=/opt/conda/bin:/usr/local/bin:/usr/bin:/bin NB_USER=jovyan NB_UID=1000 HOME=/home/jovyan
USER 1000
WORKDIR /home/jovyan
ENTRYPOINT ["/usr/bin/tini", "-g", "--", "start.sh"]
CMD ["start-notebook.py"]
"""


def context() -> io.BytesIO:
    import tarfile

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name, text in (("Dockerfile", DOCKERFILE), ("start.sh", START_SH), ("start-notebook.py", START_NOTEBOOK)):
            member = tarfile.TarInfo(name)
            member.size, member.mode = len(text.encode()), 0o755
            tar.addfile(member, io.BytesIO(text.encode()))
    data.seek(0)
    return data


@pytest.fixture
def stand_in():
    build_test_image()
    client = docker.from_env()
    image, _ = client.images.build(fileobj=context(), custom_context=True, pull=False, rm=True, forcerm=True)
    room = make_classroom()
    tag = f"classroom-docker-stacks-{room.name}:latest"
    image.tag(tag)
    try:
        yield room, tag
    finally:
        client.images.remove(tag, force=True)


def test_a_docker_stacks_style_image_runs_as_the_student_with_a_read_only_root(stand_in):
    room, tag = stand_in
    add_hub(room, image=tag)
    room.write([{"username": "ann"}])
    with running_hub(room) as hub:
        ann = room.user("ann")
        session = first_login_with_server(hub, room, "ann")
        lab = session.get(f"{hub.url}/user/{ann}/lab", timeout=60)
        assert lab.status_code == 200 and "JupyterLab" in lab.text

        (container,) = docker.from_env().containers.list(filters={"label": f"org.classroom.user={ann}"})
        probe = container.exec_run(
            [
                "/bin/bash",
                "-c",
                "id -u; whoami; echo $HOME; pwd; command -v jupyterhub-singleuser; "
                "touch /opt/conda/x 2>/dev/null && echo root-writable || echo root-read-only; "
                "touch $HOME/mine && echo home-writable; touch /tmp/t && echo tmp-writable",
            ]
        )
        lines = probe.output.decode().split()
        uid = str(__import__("pwd").getpwnam(ann).pw_uid)
        assert lines == [
            uid,
            ann,
            f"/home/{ann}",
            f"/home/{ann}",
            "/opt/conda/bin/jupyterhub-singleuser",
            "root-read-only",
            "home-writable",
            "tmp-writable",
        ], probe.output.decode()
        assert (room.paths.home(ann) / "mine").exists()  # the student's volume, not /home/jovyan
