"""`reconcile k8s render`: the Zero to JupyterHub values and the KubeSpawner hook, checked without a cluster.

The hook is run exactly as the chart runs it (its text executed with a `c` config object), then KubeSpawner
itself builds each person's pod and volume claim manifests offline (its `_mock` mode, which the project's
own tests use): the requests, limits and storage must be the person's quota from classroom.yaml.
"""

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from tornado import web
from traitlets.config import Config

from reconciler.config.load import load_classroom, load_site
from reconciler.k8s.render import HOOK_SOURCE, render

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def rendered(tmp_path):
    site = load_site(ROOT / "examples" / "site.yaml")
    classroom = load_classroom(ROOT / "examples" / "classroom.yaml", site)
    text = render(site, classroom)
    return yaml.safe_load(text), text


def test_who_may_log_in_and_nobody_is_admin(rendered):
    values, text = rendered
    auth = values["hub"]["config"]["Authenticator"]
    assert auth["allowed_users"] == ["abianchi", "jdoe", "mrossi"]  # lverdi is disabled: not allowed
    assert auth["admin_users"] == [] and auth["allow_existing_users"] is False  # a removal takes effect
    role = values["hub"]["loadRoles"]["classroom-teacher"]
    assert role["users"] == ["mrossi"]
    assert set(role["scopes"]) == {
        f"{scope}!user={name}" for name in ("jdoe", "abianchi") for scope in ("list:users", "read:users", "servers")
    }
    assert not any("admin" in scope or scope.startswith(("tokens", "access:servers")) for scope in role["scopes"])
    assert text.startswith("# Rendered by `reconcile k8s render`")
    assert values["hub"]["extraConfig"]["classroom"] == HOOK_SOURCE.read_text()


@pytest.fixture(autouse=True)
def no_cluster(tmp_path, monkeypatch):
    """KubeSpawner loads a client configuration when it is made; this one names a cluster that is never
    contacted (building manifests needs no API call; 127.0.0.1:9 is the discard port)."""
    config = tmp_path / "kubeconfig"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "none",
                "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
                "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
                "users": [{"name": "none", "user": {"token": "unused"}}],
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(config))


def spawner_for(name):
    from kubespawner import KubeSpawner

    user = SimpleNamespace(name=name, id=7, url=f"/user/{name}/", escaped_name=name, display_name=name)
    return KubeSpawner(_mock=True, user=user)


def test_each_person_gets_their_quota_in_the_pod_and_the_claim(rendered, tmp_path):
    values, _ = rendered
    quotas = tmp_path / "quotas.json"
    quotas.write_text(json.dumps(values["hub"]["extraFiles"]["classroom-quotas"]["data"]))
    config = Config()
    exec(compile(values["hub"]["extraConfig"]["classroom"], "extraConfig", "exec"), {"c": config})
    hook = config.KubeSpawner.pre_spawn_hook
    assert hook.__name__ == "classroom_pre_spawn"  # registered as the chart would run it

    expected = {
        "jdoe": (512 * 2**20, 1.0, 2**30),
        "abianchi": (512 * 2**20, 1.0, 2 * 2**30),
        "mrossi": (2 * 2**30, 2.0, 5 * 2**30),
    }

    async def manifests(name):  # KubeSpawner makes its API client in the running loop
        spawner = spawner_for(name)
        await hook(spawner, str(quotas))  # what the hub does before each start
        return await spawner.get_pod_manifest(), spawner.get_pvc_manifest()

    for name, (memory, cpu, disk) in expected.items():
        pod, claim = asyncio.run(manifests(name))
        resources = pod.spec.containers[0].resources
        assert int(resources.limits["memory"]) == int(resources.requests["memory"]) == memory
        assert float(resources.limits["cpu"]) == cpu
        assert int(claim.spec.resources.requests["storage"]) == disk

    with pytest.raises(web.HTTPError) as refused:  # disabled in classroom.yaml: no server at all
        asyncio.run(manifests("lverdi"))
    assert refused.value.status_code == 403


def test_the_command_writes_the_file(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "classroom-values.yaml"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "k8s",
            "render",
            "-f",
            str(ROOT / "examples" / "classroom.yaml"),
            "--site",
            str(ROOT / "examples" / "site.yaml"),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(out.read_text())["hub"]["loadRoles"]["classroom-teacher"]["users"] == ["mrossi"]
    assert out.stat().st_mode & 0o777 == 0o644
