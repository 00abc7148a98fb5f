"""Drivers and probe for JupyterHub's users and servers, through its REST API with reconcile's own token.

Listing pages through ``GET /users`` once per pass (the pagination media
type, so a big class is never silently cut at the first page).  Stopping and
deleting re-check the user first and treat "already gone" as done.
requests is imported only when a client is made: hosts without a hub never
load it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from ..core.actions import Action, Kind, Op
from ..core.actual import HubState, HubUser
from .drivers import Context, driver

if TYPE_CHECKING:
    import requests

PAGINATION = "application/jupyterhub-pagination+json"


class HubUnavailable(RuntimeError):
    pass


class HubClient:
    def __init__(self, api_url: str, token_file: Path, timeout: float = 10.0, db_file: Path | None = None):
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.db_file = db_file  # the hub's SQLite database: a refusal from a hub whose disk is full says so
        try:
            self._token = token_file.read_text().strip()
        except OSError as exc:
            raise HubUnavailable(f"cannot read the hub token {token_file}: {exc.strerror}") from None
        self._local = threading.local()  # people are applied side by side: one session per thread

    @property
    def session(self) -> requests.Session:
        import requests

        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
            self._local.session.headers["Authorization"] = f"token {self._token}"
        return self._local.session

    def _call(self, method: str, path: str, **kwargs) -> requests.Response:
        import requests

        try:
            response = self.session.request(method, f"{self.api_url}{path}", timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise HubUnavailable(f"hub API at {self.api_url} is unreachable: {type(exc).__name__}") from None
        if response.status_code in (401, 403):
            raise HubUnavailable(self._refusal(response))
        if response.status_code >= 500 and (full := disk_full(self.db_file)):
            raise HubUnavailable(
                f"the hub failed ({response.status_code}): its database {self.db_file} is on a full "
                f"disk ({full}); free space there"
            )
        return response

    def _refusal(self, response: requests.Response) -> str:
        """Why the hub said no, named: a database on a full disk cannot look tokens up (the hub then answers 403
        for a token that is fine)."""
        full = disk_full(self.db_file)
        if full:
            return (
                f"the hub cannot check reconcile's token: its database {self.db_file} is on a full disk "
                f"({full}); free space there"
            )
        try:
            said = str(response.json().get("message") or "")[:200]
        except ValueError:
            said = ""
        return (
            f"hub API refused reconcile's token ({response.status_code}{': ' + said if said else ''}): check "
            "token_file and the reconciler service's role"
        )

    def list_users(self, page: int = 200) -> list[dict]:
        users: list[dict] = []
        offset = 0
        while True:
            response = self._call(
                "GET", "/users", params={"offset": offset, "limit": page}, headers={"Accept": PAGINATION}
            )
            response.raise_for_status()
            body = response.json()
            users += body["items"]
            following = body["_pagination"].get("next")
            if not following:
                return users
            offset = following["offset"]

    def get_user(self, name: str) -> dict | None:
        response = self._call("GET", f"/users/{name}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def stop_server(self, name: str, wait: float = 60.0) -> str:
        user = self.get_user(name)
        if user is None or not user.get("servers", {}).get(""):
            return "not running"
        response = self._call("DELETE", f"/users/{name}/server")
        if response.status_code not in (202, 204):
            raise RuntimeError(f"hub refused to stop {name}'s server: {response.status_code} {response.text[:200]}")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            user = self.get_user(name)
            if user is None or not user.get("servers", {}).get(""):
                return "stopped"
            time.sleep(0.5)
        raise RuntimeError(f"{name}'s server did not stop within {wait:g}s")

    def start_server(self, name: str) -> str:
        """Ask the hub to start the person's default server (the spawn goes on in the hub): "starting", or
        "already" when it runs or is starting."""
        response = self._call("POST", f"/users/{name}/server")
        if response.status_code in (201, 202):
            return "starting"
        if response.status_code == 400 and "already" in response.text:
            return "already"
        raise RuntimeError(f"hub refused to start {name}'s server: {response.status_code} {response.text[:200]}")

    def delete_user(self, name: str) -> str:
        response = self._call("DELETE", f"/users/{name}")
        if response.status_code == 404:
            return "absent"
        if response.status_code != 204:
            raise RuntimeError(f"hub refused to delete {name}: {response.status_code} {response.text[:200]}")
        return "deleted"


FULL = 1024 * 1024  # bytes free under which a filesystem is called full (SQLite needs room for its journal)


def disk_full(path: Path | None) -> str | None:
    """'N KiB free' when the filesystem holding ``path`` is (nearly) full; None when it is not, or unknown."""
    if path is None:
        return None
    import os

    try:
        st = os.statvfs(path.parent)
    except OSError:
        return None
    free = st.f_bavail * st.f_frsize
    return f"{free // 1024} KiB free" if free < FULL else None


def snapshot(client: HubClient | None, error: str | None = None) -> HubState:
    """The hub part of observe: one paged listing, or the reason it failed."""
    import requests

    if client is None:
        return HubState(None, error or "no hub client")
    try:
        listed = client.list_users()
    except (HubUnavailable, requests.HTTPError, ValueError, KeyError) as exc:
        return HubState(None, str(exc))
    users = {
        u["name"]: HubUser(
            u["name"],
            bool(u.get("admin")),
            bool((u.get("servers") or {}).get("")),
            u.get("last_activity"),
            ((u.get("servers") or {}).get("") or {}).get("started"),
            ((u.get("servers") or {}).get("") or {}).get("last_activity"),
        )
        for u in listed
    }
    return HubState(MappingProxyType(users))


@driver(Kind.SERVER, Op.DISABLE)
def stop_server(action: Action, ctx: Context) -> str:
    """Through the hub; when the hub cannot be asked now (down, or refusing reconcile's token), through Docker:
    a server must stop before its home is unmounted (its container keeps its own mount and would go on
    writing), and the hub's next poll of a stopped container finds it stopped."""
    try:
        return (
            ctx.need_hub().stop_server(action.target)
            if ctx.hub is not None
            else _stop_directly(action, ctx, "the hub API is not available")
        )
    except HubUnavailable as exc:
        return _stop_directly(action, ctx, str(exc))


def _stop_directly(action: Action, ctx: Context, why: str) -> str:
    from .containers import stop_servers

    return f"{stop_servers(ctx, action.target)} through Docker ({why})"


@driver(Kind.HUB_USER, Op.DISABLE)
def forget_user(action: Action, ctx: Context) -> str:
    """Delete the hub user (a removed person, or a demoted teacher who comes back without admin); files stay."""
    return ctx.need_hub().delete_user(action.target)
