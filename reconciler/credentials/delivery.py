"""Credential delivery: e-mail (SMTP) or printable slips, from the 0600 outbox.

Each item is delivered once, then its plaintext is removed.  A failed
delivery stays in the outbox with its error and a next-try time (exponential
backoff), so nothing is lost and reconciling never waits for a mail server.
Templates (jinja2) ship in the package in English and Italian; a school can
override any of them with a file of the same name in ``templates_dir``.
"""

from __future__ import annotations

import os
import smtplib
import ssl
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

import jinja2
import yaml

from ..config import languages
from ..config.classroom import Classroom
from ..config.site import Delivery, Site, Smtp
from ..host.fsutil import write_atomic
from . import outbox

PACKAGED = Path(__file__).with_name("templates")


@dataclass
class Report:
    sent: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    waiting: list[str] = field(default_factory=list)  # no e-mail address, or not due yet
    held: list[str] = field(default_factory=list)  # not active in classroom.yaml: kept, not delivered


def active_people(classroom: Classroom) -> frozenset[str]:
    """Whose credentials may go out: the people the file wants active (never a disabled person's)."""
    return frozenset(p.username for p in classroom.people if p.status == "active")


def _environment(delivery: Delivery) -> jinja2.Environment:
    search = [str(delivery.templates_dir)] if delivery.templates_dir else []
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([*search, str(PACKAGED)]),
        autoescape=jinja2.select_autoescape(["html", "html.j2"]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def hub_url(site: Site) -> str:
    if site.delivery.hub_url:
        return site.delivery.hub_url
    return site.hub.public_url if site.hub else "(ask your teacher for the address)"


def compose(site: Site, classroom: str, item: dict) -> EmailMessage:
    """A text + HTML message to every address of the person."""
    delivery = site.delivery
    if delivery.smtp is None:
        raise ValueError("site.yaml has no delivery.smtp section: nothing to compose mail for")
    env = _environment(delivery)
    context = {
        "classroom": classroom,
        "name": item["name"],
        "username": item["username"],
        "password": item["password"],
        "hub_url": hub_url(site),
        "reset": item.get("reason") == "password reset",
    }
    # a school's own template for its language (templates_dir) wins over the packaged one, which reads the catalogue
    language = delivery.language
    context |= {"language": language, "t": languages.section(language, "mail")}
    text = env.select_template([f"credentials.{language}.txt.j2", "credentials.txt.j2"]).render(context)
    subject_line, _, body = text.partition("\n\n")
    html = env.select_template([f"credentials.{language}.html.j2", "credentials.html.j2"]).render(context)
    message = EmailMessage()
    message["Subject"] = subject_line.removeprefix("Subject:").strip()
    message["From"] = delivery.smtp.sender
    message["To"] = ", ".join(item["emails"])
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=delivery.smtp.sender.rsplit("@", 1)[-1].strip(">"))
    message.set_content(body)
    message.add_alternative(html, subtype="html")
    return message


def _connect(smtp: Smtp) -> smtplib.SMTP:
    context = ssl.create_default_context(cafile=str(smtp.ca_file) if smtp.ca_file else None)
    if smtp.security == "ssl":
        client: smtplib.SMTP = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout, context=context)
    else:
        client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
        if smtp.security == "starttls":
            client.starttls(context=context)
    if smtp.secrets_file:
        client.login(*read_secrets(smtp.secrets_file))
    return client


class UnsafeSecrets(OSError):
    """The SMTP secrets file can be read by others than root."""


def read_secrets(path: Path) -> tuple[str, str]:
    """The SMTP login from a YAML file that only its owner may read (refused when group/world readable)."""
    with open(path) as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if mode & 0o077:
            raise UnsafeSecrets(
                f"{path} is readable by others (mode {mode & 0o777:04o}): chmod 600 it; nothing was sent"
            )
        secrets = yaml.safe_load(handle.read()) or {}
    return secrets["username"], secrets["password"]


def deliver(site: Site, classroom: str, now: float | None = None, active: Collection[str] | None = None) -> Report:
    """Send every due item that has an e-mail address; one connection for the batch.

    With ``active`` (the people the file wants active), anyone else's item is held: a disabled person's
    password never goes out; it waits in the outbox in case they are enabled again.
    """
    now = time.time() if now is None else now
    delivery, directory = site.delivery, site.paths.outbox
    report = Report()
    due = []
    for item in outbox.items(directory):
        if active is not None and item["username"] not in active:
            report.held.append(item["username"])
        elif not item.get("emails") or delivery.smtp is None or item.get("next_attempt", 0) > now:
            report.waiting.append(item["username"])
        else:
            due.append(item)
    if not due:
        return report
    try:
        client = _connect(delivery.smtp)
    except UnsafeSecrets as exc:
        for item in due:
            _failed(site, item, str(exc), now, report)
        return report
    except (OSError, smtplib.SMTPException, KeyError, yaml.YAMLError) as exc:
        for item in due:
            _failed(site, item, f"cannot reach the mail server: {_describe(exc)}", now, report)
        return report
    with client:
        for item in due:
            try:
                client.send_message(compose(site, classroom, item))
            except (OSError, smtplib.SMTPException) as exc:
                _failed(site, item, _describe(exc), now, report)
                continue
            outbox.discard(directory, item["username"], item["password"])
            report.sent.append(item["username"])
    return report


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def _failed(site: Site, item: dict, error: str, now: float, report: Report) -> None:
    delay = min(site.delivery.retry_max, site.delivery.retry_base * 2 ** item.get("attempts", 0))
    outbox.record_failure(site.paths.outbox, item, error, now + delay)
    report.failed[item["username"]] = error


def render_slips(
    site: Site, classroom: str, everyone: bool = False, active: Collection[str] | None = None
) -> tuple[str, list[dict]]:
    """One cut-out card per waiting item (by default those with no e-mail): the HTML and the items shown.

    With ``active``, only those people's: a disabled person's password is never printed."""
    chosen = [
        i
        for i in outbox.items(site.paths.outbox)
        if (everyone or not i.get("emails")) and (active is None or i["username"] in active)
    ]
    language = site.delivery.language
    html = (
        _environment(site.delivery)
        .get_template("slips.html.j2")
        .render(
            classroom=classroom,
            items=chosen,
            hub_url=hub_url(site),
            language=language,
            labels={
                **languages.section(language, "slips"),
                **{key: languages.catalogue(language)[f"mail.{key}"] for key in ("address", "username", "password")},
            },
        )
    )
    return html, chosen


def consume(site: Site, items: list[dict]) -> list[str]:
    """Printed slips are delivered: their passwords leave the outbox (unless a newer one replaced them)."""
    for item in items:
        outbox.discard(site.paths.outbox, item["username"], item["password"])
    return [i["username"] for i in items]


def write_slips(
    site: Site, classroom: str, out: Path, everyone: bool = False, active: Collection[str] | None = None
) -> list[str]:
    """Write the slips to ``out`` (0600: it holds passwords); the items are consumed."""
    html, chosen = render_slips(site, classroom, everyone, active)
    if not chosen:
        return []
    write_atomic(out, html, mode=0o600)
    return consume(site, chosen)
