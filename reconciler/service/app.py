"""`reconcile api`: the teacher API and page, a hub-managed service at /services/classroom/.

Tornado with JupyterHub's own HubOAuthenticated: browsers log in through the
hub's OAuth (cookie, and XSRF on every write), scripts send a hub token that
carries custom:classroom:manage.  A person must also be an active admin in
classroom.yaml as it is now.  Blocking work (observing the host, writing the
roster, passwords) runs in a thread so one slow request never stalls others.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import signal
from pathlib import Path
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated, UserNotAllowed
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from tornado import httputil, web
from tornado.escape import json_encode
from tornado.iostream import StreamClosedError

from ..config.classroom import ASSIGNMENT_PATTERN, USERNAME_PATTERN
from ..config import languages
from ..config.load import FileBusy, InvalidFile
from ..config.site import HSTS, MANAGE_SCOPE, METRICS_SCOPE, Site
from ..engine.journal import Unwritable
from ..host import liveness
from ..host.lock import LockBusy
from ..roster.edit import Rejected, Stale, Written
from . import openapi
from . import teacher

STATIC = Path(__file__).with_name("static")
USERNAME = USERNAME_PATTERN.strip("^$")
ASSIGNMENT = ASSIGNMENT_PATTERN.strip("^$")
log = logging.getLogger("reconcile.api")

PROBLEM_JSON = "application/problem+json"  # every error of the API (RFC 9457)
MERGE_PATCH_JSON = "application/merge-patch+json"  # what a PATCH sends (RFC 7396)
PATCH_TYPES = (MERGE_PATCH_JSON, "application/json")  # application/json: the same document, as before the above


class ApiError(Exception):
    """An answer other than 2xx: its status, the detail (one sentence for a person), the per-field problems."""

    def __init__(
        self, status: int, message: str, problems: list[dict] | None = None, headers: dict[str, str] | None = None
    ):
        self.status, self.message, self.problems = status, message, problems or []
        self.headers = headers or {}  # sent with the error (tornado clears the handler's own before writing it)
        super().__init__(message)


def problem_document(status: int, detail: str, problems: list[dict] | None = None) -> dict:
    """An error as problem details (RFC 9457, ``application/problem+json``).

    No error has a type of its own (the status and ``problems`` say what went wrong), so ``type`` is
    ``about:blank`` and ``title`` the status' reason phrase, as the RFC asks for then.  Two extension members:
    ``problems``, one ``{path, message}`` per field or CSV line at fault (often empty), and ``error``, the same
    text as ``detail``, for clients written before the API answered problem details."""
    return {
        "type": "about:blank",
        "title": httputil.responses.get(status, "Unknown"),
        "status": status,
        "detail": detail,
        "problems": problems or [],
        "error": detail,
    }


class Teacher(HubOAuthenticated, web.RequestHandler):
    """Identified by the hub; allowed with the custom scope, and (for people) only as a current teacher."""

    hub_scopes = {MANAGE_SCOPE}

    @property
    def room(self) -> teacher.Room:
        return self.settings["room"]

    def check_hub_user(self, model: dict) -> dict:
        model = super().check_hub_user(model)  # raises UserNotAllowed without the scope
        teachers = self.room.teachers()  # None only if the file was never valid: the scope alone decides
        if model.get("kind", "user") == "user" and teachers is not None and model["name"] not in teachers:
            raise UserNotAllowed(model)
        return model

    @property
    def actor(self) -> str:
        """Who the journal names: the teacher, or the service that holds the scope."""
        model = self.current_user
        return model["name"] if model.get("kind", "user") == "user" else f"service:{model['name']}"

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
        if self.room.site.hub is not None and self.room.site.hub.tls is not None:
            self.set_header("Strict-Transport-Security", HSTS)


class Page(Teacher):
    @web.authenticated
    def get(self) -> None:
        language = self.room.site.delivery.language
        words = languages.catalogue(language)
        # the script's own words, as JSON in a non-executed <script type="application/json"> (json_encode escapes
        # "</", so no text can close the element); the page's static text is rendered here
        strings = json_encode({key: text for key, text in words.items() if key.startswith(("js.", "page.col."))})
        self.render(
            "index.html",
            xsrf=self.xsrf_token.decode() if isinstance(self.xsrf_token, bytes) else self.xsrf_token,
            teacher=self.current_user["name"],
            t=words,
            lang=language,
            strings=strings,
        )


class Api(Teacher):
    def get_login_url(self) -> str:
        raise web.HTTPError(403, "log in through the hub, or send a hub token with the custom:classroom:manage scope")

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Type", "application/json; charset=UTF-8")

    def write_error(self, status_code: int, **kwargs) -> None:
        """Every error, whoever raised it (the handlers, tornado's 405 or a failed login, a bug), as a problem."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        problems: list[dict] = []
        if isinstance(exc, ApiError):
            detail, problems = exc.message, exc.problems
            for name, value in exc.headers.items():
                self.set_header(name, value)
        elif isinstance(exc, web.HTTPError) and exc.log_message:
            detail = exc.log_message % exc.args if exc.args else exc.log_message
        else:  # an unexpected exception: its text stays in the log
            detail = self._reason
        self.set_header("Content-Type", PROBLEM_JSON)
        self.finish(json.dumps(problem_document(status_code, detail, problems)))

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, ApiError):
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)

    async def call(self, fn, *args, **kwargs):
        """Run blocking work in a thread; turn the core's refusals into HTTP answers."""
        try:
            return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kwargs))
        except teacher.Refused as exc:
            raise ApiError(exc.status, exc.message) from None
        except Stale as exc:  # the file's version now: what the client reads again and sends next
            raise ApiError(412, f"not written: {exc}", exc.problems, {"ETag": f'"{exc.current}"'}) from None
        except Rejected as exc:
            if exc.status == 409:  # valid, but the next pass would refuse it or block someone: the plan's reason
                raise ApiError(409, f"not written: {exc}; classroom.yaml was not changed", exc.problems) from None
            raise ApiError(exc.status, "invalid input; classroom.yaml was not changed", exc.problems) from None
        except FileBusy as exc:  # scp or `cat >` is writing it right now: a second later it is whole
            raise ApiError(
                503, f"classroom.yaml {exc.problems[0].message}; nothing was changed", headers={"Retry-After": "1"}
            ) from None
        except InvalidFile as exc:
            raise ApiError(
                409,
                "classroom.yaml is invalid as it stands; fix the file first",
                [{"path": p.path, "message": f"line {p.line}: {p.message}"} for p in exc.problems],
            ) from None
        except LockBusy as exc:
            raise ApiError(503, str(exc), headers={"Retry-After": "5"}) from None
        except Unwritable as exc:  # journal first: a change nobody could trace is not made
            raise ApiError(507, str(exc)) from None
        except OSError as exc:
            if exc.errno == errno.ENOSPC:  # the outbox or the state on a full disk: the cause, not a bare 500
                raise ApiError(507, f"the server's disk is full: {exc.strerror} ({exc.filename or 'state'})") from None
            raise

    def body(self) -> dict:
        try:
            data = json.loads(self.request.body or b"null")
        except ValueError:
            raise ApiError(400, "the request body is not JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return data

    def merge_patch(self) -> dict:
        """A PATCH's body: a JSON merge patch (RFC 7396), the members given are set and a null removes one.

        Sent as application/merge-patch+json; application/json is taken as the same document (what clients sent
        before the type was named).  Any other type, or none, is 415, with the types taken in Accept-Patch."""
        media = self.request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if media not in PATCH_TYPES:
            raise ApiError(
                415,
                f"send the changes as {MERGE_PATCH_JSON} (a JSON merge patch), not "
                + (media or "a body without Content-Type"),
                headers={"Accept-Patch": ", ".join(PATCH_TYPES)},
            )
        return self.body()

    def flag(self, name: str) -> bool:
        """A boolean query parameter: true/false (also 1/0, yes/no); anything else is a client error."""
        values = self.get_query_arguments(name)
        if not values:
            return False
        value = values[-1].lower()
        if len(values) > 1 or value not in ("true", "false", "1", "0", "yes", "no"):
            raise ApiError(400, f"{name} must be true or false")
        return value in ("true", "1", "yes")

    def expected(self) -> frozenset[str] | None:
        """If-Match: the versions of classroom.yaml the client read (None: no header, or ``*``).

        Strong comparison (RFC 9110 13.1.1): a weak or malformed tag matches no version, so a write that names
        a version that is not the file's -- stale or bogus -- is refused, never ignored."""
        header = self.request.headers.get("If-Match")
        if header is None:
            return None
        tags = [tag.strip() for tag in header.split(",") if tag.strip()]
        if "*" in tags:
            return None
        return frozenset(tag[1:-1] for tag in tags if len(tag) > 2 and tag[0] == tag[-1] == '"')

    def send(self, data, status: int = 200) -> None:
        if isinstance(data, Written):  # a roster write: the version it made is the client's next If-Match
            if data.etag:
                self.set_header("ETag", f'"{data.etag}"')
            data = data.result
        elif isinstance(data, dict) and data.get("etag"):
            self.set_header("ETag", f'"{data["etag"]}"')
        self.set_status(status)
        self.finish(json.dumps(data))


class Students(Api):
    @web.authenticated
    async def get(self) -> None:
        self.send(await self.call(teacher.students, self.room))

    @web.authenticated
    async def post(self) -> None:
        entry = await self.call(teacher.add_student, self.room, self.actor, self.body(), self.expected())
        self.send(entry, 201)


class Username(Api):
    @web.authenticated
    async def get(self) -> None:
        name = self.get_query_argument("name", "")
        if len(name) > 200:
            raise ApiError(422, "invalid input", [{"path": "name", "message": "at most 200 characters"}])
        self.send(await self.call(teacher.preview_username, self.room, name))


class Student(Api):
    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Accept-Patch", ", ".join(PATCH_TYPES))  # RFC 5789: the person is changed with PATCH

    @web.authenticated
    async def get(self, username: str) -> None:
        listing = await self.call(teacher.students, self.room)
        row = next((p for p in listing["students"] if p["username"] == username), None)
        if row is None:
            raise ApiError(404, f"{username} is not in the classroom")
        if listing.get("etag"):
            self.set_header("ETag", f'"{listing["etag"]}"')
        self.send(row)

    @web.authenticated
    async def patch(self, username: str) -> None:
        self.send(
            await self.call(
                teacher.change_student, self.room, self.actor, username, self.merge_patch(), self.expected()
            )
        )

    @web.authenticated
    async def delete(self, username: str) -> None:
        self.send(await self.call(teacher.disable_student, self.room, self.actor, username, self.expected()))


async def send_archive(handler: web.RequestHandler, path: Path) -> None:
    """Stream an export to the browser as a download (it is a tar.zst: `tar --zstd -xf`, or 7-Zip)."""
    handler.set_header("Content-Type", "application/zstd")
    handler.set_header("Content-Disposition", f'attachment; filename="{path.name}"')
    handler.set_header("Content-Length", str(path.stat().st_size))
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            handler.write(chunk)
            await handler.flush()
    await handler.finish()


class StudentExport(Api):
    """A teacher downloads a student's files (a verified export, engine/end_of_term.py)."""

    @web.authenticated
    async def get(self, username: str) -> None:
        await send_archive(self, await self.call(teacher.student_download, self.room, self.actor, username))


class OwnExport(Teacher):
    """/me/export: a logged-in student (or teacher) downloads their own files; no parameter names anyone else.

    Students may use the service only through this (their role: access to the service, no custom scope); every
    other handler needs custom:classroom:manage."""

    @property
    def hub_scopes(self):  # the service's own access scope, which the students' role grants
        return self.hub_auth.access_scopes or None

    def check_hub_user(self, model: dict) -> dict:
        model = HubOAuthenticated.check_hub_user(self, model)
        if model.get("kind", "user") != "user":
            raise UserNotAllowed(model)
        return model

    @web.authenticated
    async def get(self) -> None:
        name = self.current_user["name"]
        try:
            path = await asyncio.get_running_loop().run_in_executor(None, teacher.own_download, self.room, name)
        except teacher.Refused as exc:
            raise web.HTTPError(exc.status, exc.message) from None
        await send_archive(self, path)

    def write_error(self, status_code: int, **kwargs) -> None:
        """A student followed a link: the reason in words they can read (or pass on), not a bare error page."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        said = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else self._reason
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.finish(
            f"Your files could not be downloaded ({status_code}): {said}\n"
            + ("Try again in a minute.\n" if status_code == 503 else "")
        )


class ResetPassword(Api):
    @web.authenticated
    async def post(self, username: str) -> None:
        self.send(await self.call(teacher.reset_and_deliver, self.room, self.actor, username))


class Import(Api):
    @web.authenticated
    async def post(self) -> None:
        files = self.request.files.get("file")
        data = files[0]["body"] if files else self.request.body
        flags = {name: self.flag(name) for name in ("skip_invalid", "dry_run")}
        order = self.get_query_argument("name_order", "given-first")
        self.send(
            await self.call(
                teacher.import_csv, self.room, self.actor, data, name_order=order, expect=self.expected(), **flags
            )
        )


class Plan(Api):
    @web.authenticated
    async def get(self) -> None:
        self.send(await self.call(teacher.pending_plan, self.room))


class Assignments(Api):
    @web.authenticated
    async def get(self) -> None:
        self.send(await self.call(teacher.assignments, self.room))


class Assignment(Api):
    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Accept-Patch", ", ".join(PATCH_TYPES))

    @web.authenticated
    async def patch(self, name: str) -> None:
        self.send(
            await self.call(teacher.change_assignment, self.room, self.actor, name, self.merge_patch(), self.expected())
        )


class Status(Api):
    @web.authenticated
    async def get(self) -> None:
        found = await self.call(teacher.last_status, self.room)
        if found is None:
            raise ApiError(404, "the daemon (reconcile watch) has not finished a pass yet")
        self.send(found)


class Metrics(Api):
    """Prometheus scrapes this with a hub token holding the classroom's read-only metrics scope (the manage scope,
    which can also change the roster and print passwords, is accepted too, but a scraper needs no more than this)."""

    hub_scopes = {METRICS_SCOPE, MANAGE_SCOPE}  # either one

    @web.authenticated
    async def get(self) -> None:
        text = await self.call(teacher.metrics, self.room)
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)  # the format generate_latest writes
        self.finish(text)


class Events(Api):
    """Server-sent events: ``change`` whenever what the page shows may have changed, so it is current within a
    second of a daemon pass, a roster edit or a credential going out; ``: ping`` every 15 s keeps proxies open.
    The page falls back to polling when the stream is down."""

    @web.authenticated
    async def get(self) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("X-Accel-Buffering", "no")  # a reverse proxy in front must not hold events back
        watched = watched_files(self.room)
        last, quiet = fingerprint(watched), 0.0
        try:
            self.write("retry: 2000\n\n")
            await self.flush()
            while True:
                await asyncio.sleep(EVENT_POLL)
                now = fingerprint(watched)
                if now != last:
                    last, quiet = now, 0.0
                    self.write("event: change\ndata: {}\n\n")
                    await self.flush()
                else:
                    quiet += EVENT_POLL
                    if quiet >= 15:
                        quiet = 0.0
                        self.write(": ping\n\n")
                        await self.flush()
        except StreamClosedError:
            return  # the page went away


EVENT_POLL = 0.25  # seconds between looks at the watched files (a stat each: cheap)


def watched_files(room: teacher.Room) -> list[Path]:
    """What changes when the page's data does: the roster, the daemon's last pass, the journal, the outbox."""
    paths = room.site.paths
    return [room.file, paths.pass_record, paths.journal, paths.outbox, paths.in_force]


def fingerprint(files: list[Path]) -> tuple:
    found = []
    for path in files:
        try:
            st = path.stat()
            found.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            found.append(None)
    return tuple(found)


class Slips(Api):
    """Printable credential slips: an HTML page holding passwords, so it is a POST and never cached."""

    @web.authenticated
    async def post(self) -> None:
        everyone = self.flag("all")
        html, items = await self.call(teacher.render_slips, self.room, everyone)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        # the slips template carries its own print styles; nothing else may load
        self.set_header(
            "Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
        )
        await self.finish(html)  # resolves once the page is flushed: only then do its passwords leave the outbox
        await self.call(teacher.hand_out, self.room, self.actor, items)


class OpenApi(web.RequestHandler):
    """The API's description; public, like the hub's own REST API documentation."""

    def get(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(openapi.document(self.settings["prefix"])))


class NoSuchEndpoint(Api):
    """A JSON 404 for any other path under api/ (tornado's default is an HTML page)."""

    def prepare(self) -> None:
        raise ApiError(404, f"no such endpoint: {self.request.method} {self.request.path}")


def make_app(room: teacher.Room, prefix: str) -> web.Application:
    prefix = "/" + prefix.strip("/") + "/"
    api = prefix + "api/"
    return web.Application(
        [
            (prefix, Page),
            (prefix + "oauth_callback", HubOAuthCallbackHandler),
            (api + "openapi.json", OpenApi),
            (api + "students", Students),
            (api + "username", Username),
            (api + f"students/({USERNAME})", Student),
            (api + f"students/({USERNAME})/reset-password", ResetPassword),
            (api + f"students/({USERNAME})/export", StudentExport),
            (prefix + "me/export", OwnExport),
            (api + "import", Import),
            (api + "plan", Plan),
            (api + "status", Status),
            (api + "assignments", Assignments),
            (api + f"assignments/({ASSIGNMENT})", Assignment),
            (api + "metrics", Metrics),
            (api + "events", Events),
            (api + "slips", Slips),
            (api + ".*", NoSuchEndpoint),
        ],
        room=room,
        prefix=prefix,
        template_path=str(STATIC),
        cookie_secret=os.urandom(32),  # only the OAuth state and token cookies: a restart just logs in again
        static_path=str(STATIC / "assets"),  # app.js, app.css: shipped in the package, no build step
        static_url_prefix=prefix + "static/",
        # with hub.tls: the XSRF cookie is https-only too, and browsers stay on https (the hub's own HSTS)
        xsrf_cookie_kwargs={"secure": True} if room.site.hub is not None and room.site.hub.tls else {},
    )


def main(site: Site, classroom_file: Path) -> int:
    """Run under the hub, which sets JUPYTERHUB_SERVICE_URL, _PREFIX, the API token and the OAuth client."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    liveness.die_with_parent()  # a hub killed outright leaves no stale service holding the port
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", ""))
    if not url.port:
        raise SystemExit(
            "reconcile api runs as a JupyterHub service (`reconcile hub` starts it): JUPYTERHUB_SERVICE_URL is not set"
        )
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/classroom/")
    room = teacher.Room(site, classroom_file.resolve())
    asyncio.run(_serve(make_app(room, prefix), url.hostname or "127.0.0.1", url.port))
    return 0


async def _serve(app: web.Application, host: str, port: int) -> None:
    server = app.listen(port, host, xheaders=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("teacher API at %s:%d%s", host, port, app.settings["prefix"])
    await stop.wait()
    server.stop()
