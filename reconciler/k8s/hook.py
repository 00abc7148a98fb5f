"""KubeSpawner's pre-spawn hook for a classroom on Zero to JupyterHub.

`reconcile k8s render` puts this file's text into ``hub.extraConfig`` and the people's quotas into a JSON
file next to it (``hub.extraFiles``).  The hub runs it with its configuration (``c`` is defined there): it
reads the quotas again at every start, so a `helm upgrade` with a new roster reaches each student's next
server without a hub restart, and gives the server the person's memory (limit and guarantee: memory is
not compressible), CPU limit and a volume claim of their disk size.  Someone not in the roster (or no
longer active) gets no server.
"""

import json

from tornado import web

QUOTAS_FILE = "/usr/local/etc/jupyterhub/classroom/quotas.json"


def load_quotas(path: str = QUOTAS_FILE) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


async def classroom_pre_spawn(spawner, quotas_file: str = QUOTAS_FILE) -> None:
    person = load_quotas(quotas_file)["people"].get(spawner.user.name)
    if person is None:
        raise web.HTTPError(403, f"{spawner.user.name} is not an active member of this classroom: ask your teacher")
    spawner.mem_limit = person["memory"]
    spawner.mem_guarantee = person["memory"]
    spawner.cpu_limit = person["cpu"]
    spawner.storage_capacity = str(
        person["disk"]
    )  # bytes; a claim made earlier keeps its size (docs/how-to/beyond-one-server.md)


if "c" in globals():  # run as hub.extraConfig: register the hook
    c.KubeSpawner.pre_spawn_hook = classroom_pre_spawn  # type: ignore[name-defined]  # noqa: F821
