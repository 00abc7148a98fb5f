"""`reconcile image push-nodes`: the student image onto every swarm worker, with no registry.

There is no image registry to pull from: `docker save` here streams the image into `docker load` on each
worker (the Docker CLI reaches a worker by ssh://, tcp:// or unix://, hub.swarm.workers[].docker).  A worker
whose image already has the same ID is left alone; after a load the ID is checked again.  Workers must run
dockerd with DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 (examples/install.sh --worker does it): otherwise each
server start first tries a registry that is not there.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from ..config.site import SwarmWorker
from ..host.run import environment


@dataclass(frozen=True)
class Pushed:
    worker: str  # its address
    result: str  # "already", "loaded", or "failed: <why>"

    @property
    def ok(self) -> bool:
        return not self.result.startswith("failed")


def image_id(image: str, endpoint: str | None = None, timeout: float = 60) -> str | None:
    """The image's ID on a Docker (this one when endpoint is None); None when it is not there."""
    argv = ["docker", *(["-H", endpoint] if endpoint else []), "image", "inspect", "--format", "{{.Id}}", image]
    done = subprocess.run(argv, capture_output=True, text=True, env=environment(), timeout=timeout)
    return done.stdout.strip() or None if done.returncode == 0 else None


def load_into(image: str, endpoint: str, timeout: float = 1800) -> str:
    """docker save | docker -H endpoint load; "" on success, else the tools' own error."""
    env = environment()
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        load = subprocess.run(
            ["docker", "-H", endpoint, "load", "-q"],
            stdin=save.stdout,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
    finally:
        save.stdout.close()
        save_error = save.stderr.read().decode(errors="replace").strip()
        save.stderr.close()
        save.wait()
    if save.returncode != 0:
        return f"docker save {image}: {save_error or f'exit {save.returncode}'}"
    if load.returncode != 0:
        return f"docker load on {endpoint}: {load.stderr.strip() or f'exit {load.returncode}'}"
    return ""


def push(image: str, workers: list[SwarmWorker], say: Callable[[str], None] = lambda _: None) -> list[Pushed]:
    """Make every worker hold this image (same ID); each worker on its own, a failure never stops the others."""
    wanted = image_id(image)
    if wanted is None:
        raise LookupError(f"the image {image} is not here: run `reconcile image build` first")
    out = []
    for number, worker in enumerate(workers, 1):
        endpoint = worker.endpoint
        try:
            if image_id(image, endpoint) == wanted:
                out.append(Pushed(worker.address, "already"))
                continue
            say(
                f"[{number}/{len(workers)}] {worker.address}: loading {image} (docker save | docker -H {endpoint} load)"
            )
            error = load_into(image, endpoint)
            have = None if error else image_id(image, endpoint)
            if error or have != wanted:
                out.append(Pushed(worker.address, f"failed: {error or f'{image} there is {have}, not {wanted}'}"))
            else:
                out.append(Pushed(worker.address, "loaded"))
        except (OSError, subprocess.TimeoutExpired) as exc:
            out.append(Pushed(worker.address, f"failed: {exc}"))
    return out
