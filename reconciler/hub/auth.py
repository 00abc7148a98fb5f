"""PAM login that also mirrors the classroom's Unix groups into the hub, and never makes an admin.

JupyterHub roles can follow hub groups but not Unix groups; with the groups
mirrored at every login and auth refresh, the `classroom-teacher` role follows
the Unix teachers group reconcile manages (a demoted teacher loses it at the
next refresh), and its scopes can be limited to the students' group.
"""

from __future__ import annotations

from jupyterhub.auth import PAMAuthenticator
from traitlets import Bool, Unicode


class ClassroomAuthenticator(PAMAuthenticator):
    teachers_group = Unicode(help="The Unix group whose members belong to the hub group of the same name").tag(
        config=True
    )

    students_group = Unicode(help="Likewise for the students' Unix group").tag(config=True)

    manage_groups = Bool(True, config=True)  # group assignment then comes only from hub_groups()

    def hub_groups(self, username: str) -> list[str]:
        """The hub groups this person belongs to: of the classroom's two Unix groups, those they are in."""
        try:
            gids = set(self._getgrouplist(username, self._getpwnam(username).pw_gid))
        except KeyError:  # the account is gone
            return []
        found = []
        for name in (self.teachers_group, self.students_group):
            try:
                if name and self._getgrnam(name).gr_gid in gids:
                    found.append(name)
            except KeyError:  # the group is gone
                pass
        return found

    async def authenticate(self, handler, data):
        username = await super().authenticate(handler, data)
        if username is None:
            return None
        return {"name": username, "groups": self.hub_groups(username), "admin": False}

    async def refresh_user(self, user, handler=None):
        return {"name": user.name, "groups": self.hub_groups(user.name), "admin": False}


class ClassroomGate:
    """What reconcile keeps owning when hub.extra_config_dir brings another authenticator (OAuth, LTI, LDAP):
    a ``post_auth_hook`` that lets in only the active people of classroom.yaml (read again when it changes;
    while it is invalid, the copy the daemon last applied), never as admin, in their role's hub group (the
    teacher role follows it).  The authenticator's usernames must be the classroom's."""

    def __init__(self, site, classroom_file: str, teachers_group: str, students_group: str):
        self.site, self.classroom_file, self.in_force = site, classroom_file, str(site.paths.in_force)
        self.groups = {"teacher": teachers_group, "student": students_group}
        self._seen: tuple | None = None
        self._active: dict[str, str] = {}

    def active(self) -> dict[str, str]:
        """username -> role, for the active people."""
        import os
        from pathlib import Path

        from ..config.load import InvalidFile, load_classroom

        key = tuple(os.stat(p).st_mtime_ns if os.path.exists(p) else None for p in (self.classroom_file, self.in_force))
        if key == self._seen:
            return self._active
        for path in (self.classroom_file, self.in_force):
            try:
                classroom = load_classroom(Path(path), self.site)
            except (InvalidFile, OSError):
                continue
            self._active = {
                p.username: role
                for role, people in (("teacher", classroom.admins), ("student", classroom.students))
                for p in people
                if p.status == "active"
            }
            self._seen = key
            return self._active
        return {}  # neither file is valid: nobody new gets in (fail closed)

    def __call__(self, authenticator, handler, auth_model):
        role = self.active().get(auth_model["name"])
        if role is None:
            authenticator.log.warning("%s is not an active member of the classroom: login refused", auth_model["name"])
            return None
        return {**auth_model, "admin": False, "groups": [self.groups[role]]}
