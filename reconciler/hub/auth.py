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
        config=True)

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
