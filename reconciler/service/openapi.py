"""The teacher API's OpenAPI 3.1 description, served at <prefix>api/openapi.json.

The request bodies come from the same pydantic model that validates
classroom.yaml, and the answers from the response models below, which the use
cases build their answers with: the documentation cannot drift from what the
file accepts or what the API sends.  The tests run schemathesis against it.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Literal

from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field

from ..config.classroom import USERNAME_PATTERN, Person
from ..core.pass_record import RESULTS, PassRecord
from ..roster.edit import EDITABLE

USERNAME = {"type": "string", "pattern": USERNAME_PATTERN}
NULLABLE_STRING = {"type": ["string", "null"]}


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Overrides(_Answer):
    """The person's own limits over the named quota, as written in the file."""

    memory: str | int | float | None
    cpu: str | int | float | None
    disk: str | int | float | None


class StudentRow(_Answer):
    username: str
    name: str | None
    role: Literal["student", "teacher"] | None
    status: Literal["active", "disabled", "archived", "purged", "removed"] = Field(
        description="as the file says; removed = managed here but no longer in the file"
    )
    emails: list[str]
    quota: str | None
    overrides: Overrides | None
    account: Literal["enabled", "disabled", "half-disabled", "missing"]
    cpu: float | None
    memory_limit: int | None
    memory_used: int | None = Field(description="bytes, while the server runs")
    disk_quota: int | None
    disk_used: int | None
    volume_size: int | None
    mounted: bool
    server: Literal["running", "stopped"] | None = Field(description="null when the hub cannot be asked")
    node: str | None = Field(None, description="With the swarm spawner: the worker a running server is on")
    stale_image: bool = Field(
        False,
        description="The running server uses an older image than the one built now: "
        "it gets the new one when it restarts",
    )
    last_activity: str | None
    credentials: str | None = Field(description="null: nothing waiting; pending; slip; failed (N): ...")
    server_url: str | None = Field(
        None, description="Open this student's running JupyterLab (only with per-user subdomains: hub.subdomain_host)"
    )


class HubReach(_Answer):
    reachable: bool
    error: str | None


class DaemonState(_Answer):
    """The reconcile daemon as its heartbeat shows it: while it is not running, edits are saved but not applied."""

    running: bool
    heard: float | None = Field(description="seconds since its last heartbeat; null: never heard from here")
    pid: int | None
    pass_started: float | None = Field(description="when the pass in progress started (Unix time); null: waiting")


class QuotaSizes(_Answer):
    memory: int
    cpu: float
    disk: int


class DiskChanges(_Answer):
    """How a disk size change reaches a running server: what the page warns about before it is made."""

    online_grow: bool = Field(description="this host grows a mounted volume in place (else: offline)")
    resize_running: Literal["wait", "restart"]


class Invalid(_Answer):
    problems: list[str] = Field(description="file:line:column: field: message")
    changed: str = Field(description="who changed the file: the git commit, or a change on the server")


class CourseMaterial(_Answer):
    url: str
    branch: str
    folder: str = Field(description="where it lands in each home")
    link: str = Field(description="give this to the class: it pulls the material into whoever opens it (nbgitpuller)")


class StudentList(_Answer):
    classroom: str
    roster_in_git: bool
    hub: HubReach | None
    quotas: list[str]
    students: list[StudentRow]
    open_servers: str | None = Field(None, description="null when teachers may open students' servers; else why not")
    quota_sizes: dict[str, QuotaSizes] = Field(default_factory=dict, description="each named quota, in bytes and CPUs")
    disk_changes: DiskChanges | None = None
    invalid: Invalid | None = Field(
        None,
        description="classroom.yaml is invalid: the class shown is its last valid "
        "version (the one in force); writes answer 409 until the file is fixed",
    )
    course_material: CourseMaterial | None = Field(None, description="classroom.yaml's course_repo, with its link")
    host_seen: float = Field(
        0.0,
        description="seconds since accounts, volumes and mounts were observed (the daemon's "
        "last pass, when it saw this roster; servers and the hub are always asked now)",
    )
    daemon: DaemonState | None = None
    etag: str | None = Field(
        None,
        description="the version of classroom.yaml this list was made from (also the "
        "ETag header): send it as If-Match with a write, which is refused (412) if the file "
        "changed since; null while the file is invalid",
    )


def _model_schemas(*models: type[BaseModel]) -> dict:
    """The models' JSON schemas as OpenAPI components (their nested models become components too)."""
    out: dict = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def _person_schemas() -> tuple[dict, dict]:
    person = Person.model_json_schema()
    new = deepcopy(person)
    new["title"] = "NewStudent"
    new["description"] = "A student as classroom.yaml takes it; without username, one is made from the name"
    new["required"] = ["name"]
    new["properties"]["status"] = {"enum": ["active", "disabled"], "default": "active"}
    for key, schema in new["properties"].items():  # null = not given, as in the file
        if key != "name":
            new["properties"][key] = {"anyOf": [schema, {"type": "null"}]}
    changes = {
        "title": "StudentChanges",
        "description": "A merge patch: the keys given are set, a null removes the key (e.g. an inline quota)",
        "type": "object",
        "additionalProperties": False,
        "properties": {key: {"anyOf": [deepcopy(person["properties"][key]), {"type": "null"}]} for key in EDITABLE},
    }
    changes["properties"]["status"] = {"enum": ["active", "disabled"]}
    return new, changes


def _components() -> dict:
    new, changes = _person_schemas()
    action = {
        "type": "object",
        "required": ["op", "kind", "target", "reason", "destructive", "drift"],
        "properties": {
            "op": {"enum": ["create", "update", "disable", "destroy"]},
            "kind": {"type": "string"},
            "target": {"type": "string"},
            "before": {},
            "after": {},
            "reason": {"type": "string"},
            "destructive": {"type": "boolean"},
            "drift": {"type": "boolean"},
            "waits": {
                "type": "string",
                "description": "present when the change cannot be made now (the volume is "
                "in use by a running server): why, and when it applies",
            },
        },
    }
    note = {
        "type": "object",
        "required": ["rule", "target", "message"],
        "properties": {"rule": {"type": "string"}, "target": {"type": "string"}, "message": {"type": "string"}},
    }
    return {
        "schemas": {
            **_model_schemas(StudentList),
            "FieldProblem": {
                "type": "object",
                "required": ["path", "message"],
                "description": "One field (or CSV line) at fault; path is empty when the problem is the whole input",
                "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
            },
            "Problem": {
                "type": "object",
                "required": ["type", "title", "status", "detail", "problems"],
                "description": "Every error, as problem details (RFC 9457, application/problem+json).  No error has a "
                "type of its own: type is about:blank and title the status' reason phrase; detail says what went "
                "wrong, for a person",
                "properties": {
                    "type": {
                        "type": "string",
                        "format": "uri-reference",
                        "description": "about:blank (a client must take any other URI as about:blank, RFC 9457)",
                    },
                    "title": {"type": "string", "description": "the HTTP reason phrase of status"},
                    "status": {"type": "integer", "minimum": 400, "maximum": 599},
                    "detail": {"type": "string"},
                    "problems": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/FieldProblem"},
                        "description": "extension member: each field or line at fault, with its path (may be empty)",
                    },
                    "error": {
                        "type": "string",
                        "deprecated": True,
                        "description": "extension member: the same text as detail, for clients written before "
                        "problem details; read detail",
                    },
                },
            },
            "NewStudent": new,
            "StudentChanges": changes,
            "Entry": {
                "type": "object",
                "required": ["username", "name"],
                "description": "The person as now written",
                "properties": {"username": {"type": "string"}, "name": {"type": "string"}},
            },
            "Reset": {
                "type": "object",
                "required": ["username", "delivery", "sent", "error"],
                "properties": {
                    "username": {"type": "string"},
                    "delivery": {"enum": ["email", "slip"]},
                    "sent": {"type": "boolean"},
                    "error": NULLABLE_STRING,
                },
            },
            "ImportResult": {
                "type": "object",
                "required": ["dry_run", "added", "present", "skipped"],
                "properties": {
                    "dry_run": {"type": "boolean"},
                    "added": {"type": "array", "items": {"$ref": "#/components/schemas/Entry"}},
                    "present": {"type": "array", "items": {"type": "string"}},
                    "skipped": {"type": "array", "items": {"type": "string"}},
                },
            },
            "Action": action,
            "Note": note,
            "Plan": {
                "type": "object",
                "required": ["format_version", "classroom", "actions", "drift", "refused", "blocked", "summary"],
                "properties": {
                    "format_version": {"const": 1},
                    "classroom": {"type": "string"},
                    "actions": {"type": "array", "items": {"$ref": "#/components/schemas/Action"}},
                    "drift": {"type": "array", "items": {"$ref": "#/components/schemas/Action"}},
                    "refused": {"type": "array", "items": {"$ref": "#/components/schemas/Note"}},
                    "blocked": {"type": "array", "items": {"$ref": "#/components/schemas/Note"}},
                    "summary": {"type": "object"},
                    "upcoming": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/Note"},
                        "description": "What falls due later (an assignment's release); present when there is any",
                    },
                },
            },
            "AssignmentEntry": {
                "type": "object",
                "required": ["name", "source", "release"],
                "description": "The assignment's entry in classroom.yaml, as written",
            },
            "AssignmentChange": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "due": {"type": ["string", "null"], "examples": ["2026-12-21 23:59", "2026-12-21T22:59:00Z"]},
                    "late_until": {"type": ["string", "null"]},
                    "feedback": {"type": ["string", "null"]},
                    "extensions": {
                        "type": ["object", "null"],
                        "additionalProperties": {"type": ["string", "null"], "examples": ["2d", "36h"]},
                    },
                },
            },
            "Assignments": {
                "type": "object",
                "required": ["observed_at", "assignments"],
                "properties": {
                    "observed_at": {"type": "string", "description": "when the host was looked at (ISO 8601)"},
                    "assignments": {"type": "array", "items": {"$ref": "#/components/schemas/Assignment"}},
                },
            },
            "Assignment": {
                "type": "object",
                "required": ["name", "stage", "release", "due", "late_until", "feedback", "extensions", "shown"],
                "properties": {
                    "name": {"type": "string"},
                    "stage": {
                        "enum": [
                            "unknown",
                            "not released",
                            "released (never collected)",
                            "released",
                            "late window open",
                            "extensions running",
                            "collected",
                            "feedback returned",
                        ]
                    },
                    "release": {"type": "string", "format": "date-time"},
                    "due": {"type": ["string", "null"], "format": "date-time"},
                    "late_until": {"type": ["string", "null"], "format": "date-time"},
                    "feedback": {"type": ["string", "null"], "format": "date-time"},
                    "extensions": {
                        "type": "object",
                        "additionalProperties": {"type": "integer"},
                        "description": "seconds",
                    },
                    "shown": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                        "description": "the times as classroom.yaml's zone words them",
                    },
                    "source_missing": {"type": "boolean"},
                    "handed_out": {"type": "integer", "minimum": 0},
                    "submissions": {
                        "type": "object",
                        "required": ["on time", "late", "missing", "not yet"],
                        "additionalProperties": {"type": "integer", "minimum": 0},
                    },
                    "students": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["username", "handed_out", "deadline", "submission", "feedback"],
                            "properties": {
                                "username": {"type": "string"},
                                "handed_out": {"type": "boolean"},
                                "deadline": {"type": ["string", "null"], "format": "date-time"},
                                "deadline_shown": {"type": ["string", "null"]},
                                "submission": {"enum": ["on time", "late", "missing", None]},
                                "collected_at": {"type": ["string", "null"]},
                                "changed_since": {
                                    "type": "boolean",
                                    "description": "changed since collected, in the late window: collected again",
                                },
                                "feedback": {"enum": ["returned", "written", None]},
                            },
                        },
                    },
                },
            },
            "PassStatus": {
                "type": "object",
                "required": ["format_version", "time", "result"],
                "description": "The daemon's <state_dir>/status.json (core.pass_record.PassRecord); the parts a pass "
                "did not reach (a busy or invalid file, an error) are left out",
                "properties": {
                    "format_version": {"const": PassRecord.FORMAT},
                    "time": {"type": "string", "format": "date-time"},
                    "duration_seconds": {"type": "number"},
                    "classroom_file": {"type": "string"},
                    "file_sha256": {"type": ["string", "null"]},
                    "git": {"type": ["object", "null"], "description": "the commit the file comes from"},
                    "result": {"enum": list(RESULTS)},
                    "last_applied": {
                        "type": ["object", "null"],
                        "description": "the last valid version applied: sha256, time",
                    },
                    "problems": {"type": "array", "items": {"type": "string"}},
                    "plan": {"$ref": "#/components/schemas/Plan"},
                    "people": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "required": ["condition"],
                            "properties": {
                                "condition": {"enum": ["ok", "failed", "waiting"]},
                                "reason": {"type": "string"},
                            },
                        },
                    },
                    "applied": {"type": "integer"},
                    "failed": {"type": "object", "additionalProperties": {"type": "string"}},
                    "waiting": {"type": "object", "additionalProperties": {"type": "string"}},
                    "credentials": {"type": "object", "description": "the delivery: sent, failed, waiting (or error)"},
                    "disks": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "what": {"type": "string"},
                                "path": {"type": "string"},
                                "size": {"type": "integer"},
                                "free": {"type": "integer"},
                                "low": {"type": "boolean"},
                            },
                        },
                    },
                    "prewarm": {"$ref": "#/components/schemas/Prewarm"},
                    "assignments": {
                        "type": "object",
                        "description": "per assignment, after the pass: copies handed out, submissions by verdict "
                        "(on time, late, missing, not yet), feedback returned",
                        "additionalProperties": {"type": "object", "additionalProperties": {"type": "integer"}},
                    },
                },
            },
            "Prewarm": {
                "type": "object",
                "description": "The next lesson of classroom.yaml's schedule and its pre-warm "
                "(present when the classroom has a schedule)",
                "properties": {
                    "phase": {"enum": ["none", "waiting", "warming", "lesson"]},
                    "text": {"type": "string"},
                    "lesson_start": {"type": ["string", "null"], "format": "date-time"},
                    "lesson_end": {"type": ["string", "null"], "format": "date-time"},
                    "window": {
                        "type": ["string", "null"],
                        "format": "date-time",
                        "description": "when the pre-warm starts",
                    },
                    "wanted": {"type": "integer"},
                    "running": {"type": "integer"},
                    "skipped": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                        "description": "username -> why not pre-started",
                    },
                    "started": {"type": "array", "items": {"type": "string"}},
                    "failed": {"type": "object", "additionalProperties": {"type": "string"}},
                    "error": {"type": "string", "description": "why the daemon's pre-warm failed"},
                },
            },
        },
        "securitySchemes": {
            "hubToken": {
                "type": "http",
                "scheme": "bearer",
                "description": "A JupyterHub API token with the custom:classroom:manage scope "
                "(`Authorization: token ...` works too)",
            },
            "hubLogin": {
                "type": "apiKey",
                "in": "cookie",
                "name": "jupyterhub-services-classroom",
                "description": "The browser's hub OAuth login; writes also need the _xsrf token (X-XSRFToken header)",
            },
        },
    }


def _json(schema: str, *media: str) -> dict:
    ref = {"schema": {"$ref": f"#/components/schemas/{schema}"}}
    return {"content": {kind: deepcopy(ref) for kind in media or ("application/json",)}}


MERGE_PATCH = ("application/merge-patch+json", "application/json")  # the second: the same document (compatibility)


def _errors(*codes: int) -> dict:
    text = {
        400: "The body is not a JSON object",
        403: "Not a teacher (or no login / token)",
        404: "No such person or assignment",
        409: "The roster is kept in git, the person exists, or the file is invalid",
        422: "Invalid input: problems with field paths; classroom.yaml untouched",
        412: "If-Match names a version of classroom.yaml that is not the file's now: nothing was written; "
        "read again (the ETag header is the file's version now)",
        415: "The body is neither application/merge-patch+json nor application/json (Accept-Patch names both)",
        503: "Another pass holds the lock, or classroom.yaml is being written in place; retry (Retry-After)",
        507: "The journal or the state has no room on disk: nothing was changed",
    }
    return {
        str(code): {"description": text[code], **_json("Problem", "application/problem+json")}
        for code in (403, 503, *codes)
    }


def document(prefix: str = "/services/classroom/") -> dict:
    user = {"name": "username", "in": "path", "required": True, "schema": USERNAME}
    flag = {"schema": {"type": "boolean", "default": False}, "in": "query", "required": False}
    if_match = {
        "name": "If-Match",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "The ETag of the class list (or of a previous write) the change is based on: the "
        "write is made only if classroom.yaml is still that version, else 412",
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Classroom teacher API",
            "version": "1",
            "description": "Manage the classroom's students. Writes change classroom.yaml (comments kept); "
            "the reconcile daemon then converges the server. DELETE disables, never purges.",
        },
        "servers": [{"url": prefix.rstrip("/")}],
        "security": [{"hubToken": []}, {"hubLogin": []}],
        "paths": {
            "/api/students": {
                "get": {
                    "summary": "Every person: desired and observed",
                    "operationId": "listStudents",
                    "responses": {"200": {"description": "The class", **_json("StudentList")}, **_errors(409)},
                },
                "post": {
                    "summary": "Add a student",
                    "operationId": "addStudent",
                    "parameters": [if_match],
                    "requestBody": {"required": True, **_json("NewStudent")},
                    "responses": {
                        "201": {"description": "Added as written", **_json("Entry")},
                        **_errors(400, 409, 412, 422, 507),
                    },
                },
            },
            "/api/username": {
                "get": {
                    "summary": "The username a new student with this name would get (same rule as import)",
                    "operationId": "previewUsername",
                    "parameters": [
                        {
                            "name": "name",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                        }
                    ],
                    "responses": {
                        "200": {"description": "The username, and the name as it would be written", **_json("Entry")},
                        **_errors(409, 422),
                    },
                },
            },
            "/api/events": {
                "get": {
                    "summary": "Server-sent events: `change` whenever the class, the plan or the last pass may "
                    "have changed (the page refreshes then); `: ping` every 15 s",
                    "operationId": "events",
                    "responses": {
                        "200": {
                            "description": "An endless text/event-stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        "403": _errors()["403"],
                    },
                },
            },
            "/api/students/{username}": {
                "parameters": [user],
                "get": {
                    "summary": "One person",
                    "operationId": "getStudent",
                    "responses": {"200": {"description": "The person", **_json("StudentRow")}, **_errors(404, 409)},
                },
                "patch": {
                    "summary": "Change a person (quota, e-mail, status: disabled / active, ...)",
                    "description": "A JSON merge patch (RFC 7396, application/merge-patch+json): the members given "
                    "are set, a null removes one (an override goes back to the quota's value, quota to default, "
                    "status to active; name cannot be removed).  application/json is taken as the same document, "
                    "for clients written before; any other Content-Type is 415.",
                    "operationId": "changeStudent",
                    "parameters": [if_match],
                    "requestBody": {"required": True, **_json("StudentChanges", *MERGE_PATCH)},
                    "responses": {
                        "200": {"description": "The person as now written", **_json("Entry")},
                        **_errors(400, 404, 409, 412, 415, 422, 507),
                    },
                },
                "delete": {
                    "summary": "Disable (account locked, files kept); never purges",
                    "operationId": "disableStudent",
                    "parameters": [if_match],
                    "responses": {
                        "200": {"description": "The person as now written", **_json("Entry")},
                        **_errors(404, 409, 412, 422, 507),
                    },
                },
            },
            "/api/students/{username}/reset-password": {
                "parameters": [user],
                "post": {
                    "summary": "A new generated password, e-mailed or left for a slip (never in the answer)",
                    "operationId": "resetPassword",
                    "responses": {
                        "200": {"description": "How it will reach the person", **_json("Reset")},
                        **_errors(404, 409, 507),
                    },
                },
            },
            "/api/students/{username}/export": {
                "parameters": [user],
                "get": {
                    "summary": "The student's files as a verified archive (tar.zst, taken consistently even while "
                    "their server runs; one made in the last ten minutes is served again)",
                    "operationId": "exportStudent",
                    "responses": {
                        "200": {
                            "description": "USER-YYYYMMDD.tar.zst, as an attachment",
                            "content": {
                                "application/zstd": {
                                    "schema": {"type": "string", "contentMediaType": "application/zstd"}
                                }
                            },
                        },
                        **_errors(404, 409, 503, 507),
                    },
                },
            },
            "/api/import": {
                "post": {
                    "summary": "Add the people of a CSV roster (same rules as `reconcile import-csv`)",
                    "operationId": "importCsv",
                    "parameters": [
                        if_match,
                        {"name": "skip_invalid", **flag},
                        {"name": "dry_run", **flag},
                        {
                            "name": "name_order",
                            "in": "query",
                            "required": False,
                            "description": "how a name without a comma is written ('Bianchi, Marco' "
                            "is always surname, given name)",
                            "schema": {
                                "type": "string",
                                "enum": ["given-first", "surname-first"],
                                "default": "given-first",
                            },
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "text/csv": {"schema": {"type": "string"}},
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["file"],
                                    "properties": {"file": {"type": "string", "contentMediaType": "text/csv"}},
                                }
                            },
                        },
                    },
                    "responses": {
                        "200": {"description": "Who was (or would be) added", **_json("ImportResult")},
                        **_errors(400, 409, 412, 422, 507),
                    },
                },
            },
            "/api/plan": {
                "get": {
                    "summary": "The pending plan (the core's dry run, JSON format)",
                    "operationId": "getPlan",
                    "responses": {"200": {"description": "The plan", **_json("Plan")}, **_errors(409)},
                },
            },
            "/api/assignments": {
                "get": {
                    "summary": "Each assignment's times and each active student's copy, submission and feedback",
                    "operationId": "getAssignments",
                    "responses": {"200": {"description": "The assignments", **_json("Assignments")}, **_errors(409)},
                },
            },
            "/api/assignments/{name}": {
                "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                "patch": {
                    "summary": "Change an assignment's times or extensions: extend for a student, collect now, "
                    "return feedback now (written into classroom.yaml, comments kept)",
                    "description": "A JSON merge patch (RFC 7396) of due, late_until, feedback (a time, or null to "
                    "remove it) and extensions (username -> 2d / 36h, or null).  A time with an offset is written "
                    "in the file's time zone, to the minute.  If-Match: the ETag of the version the client read.",
                    "operationId": "changeAssignment",
                    "parameters": [if_match],
                    "requestBody": {"required": True, **_json("AssignmentChange", *MERGE_PATCH)},
                    "responses": {
                        "200": {"description": "The assignment as now written", **_json("AssignmentEntry")},
                        **_errors(400, 404, 409, 412, 415, 422, 503, 507),
                    },
                },
            },
            "/api/status": {
                "get": {
                    "summary": "The daemon's last pass",
                    "operationId": "getStatus",
                    "responses": {"200": {"description": "status.json", **_json("PassStatus")}, **_errors(404)},
                },
            },
            "/api/metrics": {
                "get": {
                    "summary": "The classroom in Prometheus' text format (from the daemon's last pass); a token "
                    "with custom:classroom:metrics alone is enough",
                    "operationId": "getMetrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus' text exposition format, as prometheus_client writes it",
                            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                        },
                        **_errors(),
                    },
                },
            },
            "/api/slips": {
                "post": {
                    "summary": "Printable credential slips (HTML with passwords; they leave the outbox)",
                    "operationId": "printSlips",
                    "parameters": [{"name": "all", **flag, "description": "also people with an e-mail"}],
                    "responses": {
                        "200": {
                            "description": "The slips page",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        },
                        **_errors(400, 409, 507),
                    },
                },
            },
        },
        "components": _components(),
    }
