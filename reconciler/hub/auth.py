"""PAM login that also mirrors the classroom's teachers group into the hub.

JupyterHub roles can follow hub groups but not Unix groups; with the group
mirrored at every login and auth refresh, the `classroom-teacher` role (the
teacher API's custom scope) follows the Unix group reconcile manages, and a
demoted teacher loses it at the next refresh.
"""

from __future__ import annotations

from jupyterhub.auth import PAMAuthenticator
from traitlets import Bool, Unicode


class ClassroomAuthenticator(PAMAuthenticator):
    teachers_group = Unicode(help="The Unix group whose members belong to the hub group of the same name").tag(
        config=True)

    manage_groups = Bool(True, config=True)  # group assignment then comes only from hub_groups()

    def hub_groups(self, username: str) -> list[str]:
        """The hub groups this person belongs to: the teachers group, or none."""
        try:
            gids = set(self._getgrouplist(username, self._getpwnam(username).pw_gid))
            teachers = self._getgrnam(self.teachers_group).gr_gid
        except KeyError:  # the account or the group is gone
            return []
        return [self.teachers_group] if teachers in gids else []

    async def authenticate(self, handler, data):
        username = await super().authenticate(handler, data)
        if username is None:
            return None
        return {"name": username, "groups": self.hub_groups(username)}

    async def refresh_user(self, user, handler=None):
        return {"name": user.name, "groups": self.hub_groups(user.name)}
