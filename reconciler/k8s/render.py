"""`reconcile k8s render`: classroom.yaml as a values.yaml fragment for the Zero to JupyterHub chart.

What it carries over from the single-server classroom: who may log in (the active people; removing or
disabling someone takes effect at the next `helm upgrade`, ``allow_existing_users`` is off), everyone's
memory / CPU / disk from their quota (``hook.py``, run by KubeSpawner before each start), and the teachers'
role: nobody is hub admin; teachers see and start/stop the students' servers (``!user=`` filters, so the
role follows the roster at every upgrade) and may open them only with per-user subdomains.  What the
operator provides: the cluster, a storage class for the claims, DNS, TLS, an authenticator (the school's
OAuth or LDAP: classroom usernames must be its usernames), and the student image in a registry.
"""

from __future__ import annotations

from pathlib import Path

from ..config.classroom import Classroom, group_name
from ..config.site import Site
from ..core.desired import resolve
from ..host.volumes import layout_for
from .hook import QUOTAS_FILE

HOOK_SOURCE = Path(__file__).with_name("hook.py")


def values(site: Site, classroom: Classroom, subdomains: bool = False) -> dict:
    members = resolve(classroom, site.paths, layout_for(site)).members
    active = [m for m in members if m.status == "active"]
    students = [m.username for m in active if m.role == "student"]
    teachers = [m.username for m in active if m.role == "teacher"]
    scopes = []
    for name in students:
        scopes += [f"list:users!user={name}", f"read:users!user={name}", f"servers!user={name}"]
        if subdomains:
            scopes.append(f"access:servers!user={name}")
    default = classroom.quotas.get("default")
    hub: dict = {
        "config": {
            "Authenticator": {
                "allowed_users": sorted(m.username for m in active),
                "admin_users": [],
                "allow_existing_users": False,
            },
            "JupyterHub": {
                "load_groups": {
                    group_name(classroom.name, "student"): {"users": sorted(students)},
                    group_name(classroom.name, "teacher"): {"users": sorted(teachers)},
                }
            },
        },
        "loadRoles": {
            "classroom-teacher": {
                "description": f"Teachers of {classroom.name}: see and start/stop their students' servers",
                "scopes": scopes,
                "users": sorted(teachers),
            },
        },
        "extraFiles": {
            "classroom-quotas": {
                "mountPath": QUOTAS_FILE,
                "data": {
                    "classroom": classroom.name,
                    "people": {m.username: {"memory": m.memory, "cpu": m.cpu, "disk": m.disk} for m in active},
                },
            },
        },
        "extraConfig": {"classroom": HOOK_SOURCE.read_text(encoding="utf-8")},
    }
    if subdomains:
        hub["config"]["JupyterHub"]["subdomain_host"] = site.hub.subdomain_host if site.hub else None
    singleuser: dict = {"storage": {"type": "dynamic"}}
    if default is not None:  # what a server gets if the hook ever did not run
        singleuser["storage"]["capacity"] = str(default.disk)
        singleuser["memory"] = {"limit": default.memory, "guarantee": default.memory}
        singleuser["cpu"] = {"limit": default.cpu}
    if site.hub is not None:
        name, _, tag = site.hub.image.rpartition(":")
        singleuser["image"] = {"name": name or site.hub.image, "tag": tag if name else "latest"}
    return {"hub": hub, "singleuser": singleuser}


def render(site: Site, classroom: Classroom) -> str:
    import yaml

    subdomains = bool(site.hub is not None and site.hub.subdomain_host)
    header = (
        f"# Rendered by `reconcile k8s render` from classroom.yaml ({classroom.name}): do not edit, render again.\n"
        "# Merge with your own values: helm upgrade --install jhub jupyterhub/jupyterhub -f yours.yaml -f this.yaml\n"
    )

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, data: str) -> yaml.Node:  # the hook's source stays readable: a | block
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)

    Dumper.add_representer(str, text)
    return header + yaml.dump(values(site, classroom, subdomains), Dumper=Dumper, sort_keys=False, width=120)
