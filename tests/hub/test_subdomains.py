"""Per-user subdomains (hub.subdomain_host): a student's page cannot act as the teacher who opens it.

A student plants code in their own ~/.local (usercustomize.py, run by every Python they start, their
server included) that adds a script to every page their JupyterLab serves.  The script tries what an
attacker would: read the teacher page's API and the hub API with the viewer's cookies, and reset
another student's password.  A teacher opens that student's JupyterLab from the teacher page in
headless Chromium; the names are *.localhost, which Chromium resolves to loopback itself.  Every
attempt must fail: the student's server, the hub and the teacher page are three different origins.
"""

import json
import subprocess
import textwrap

import pytest

from hostkit import host_ready, make_classroom
from hubkit import ARTIFACTS, Hub, add_hub, chromium_missing, free_port, hub_ready, launch_chromium, log_in, tear_down
from imagekit import TAG, build_test_image, image_unavailable

REASON = host_ready() or hub_ready() or image_unavailable() or chromium_missing()
pytestmark = pytest.mark.skipif(bool(REASON), reason=str(REASON))

# What the student plants: Python runs ~/.local/lib/python3.X/site-packages/usercustomize.py at every start.
USERCUSTOMIZE = '''
import tornado.web

SCRIPT = b"""<script>
(async () => {
  const out = {cookies: document.cookie, origin: location.origin};
  const attempt = async (name, url, init) => {
    try { const r = await fetch(url, Object.assign({credentials: "include"}, init)); out[name] = "read " + r.status; }
    catch (e) { out[name] = "blocked"; }
  };
  await attempt("teacher api", "%(service)sapi/students");
  await attempt("hub api", "%(hub)s/hub/api/users");
  // a forged write needs no readable answer: with no-cors the request goes out, cookies and all
  await attempt("reset password", "%(service)sapi/students/%(victim)s/reset-password",
                {method: "POST", mode: "no-cors", body: "{}"});
  await attempt("hub token", "%(hub)s/hub/api/users/%(teacher)s/tokens", {method: "POST", mode: "no-cors", body: "{}"});
  window.__probe = out;
})();
</script>"""
_finish = tornado.web.RequestHandler.finish


def finish(self, chunk=None):
    try:
        if "text/html" in self._headers.get("Content-Type", ""):
            if chunk is not None:
                self.write(chunk)
                chunk = None
            body = b"".join(self._write_buffer)
            if b"</body>" in body:
                self._write_buffer = [body.replace(b"</body>", SCRIPT + b"</body>", 1)]
    except Exception:
        pass
    return _finish(self, chunk)


tornado.web.RequestHandler.finish = finish
'''


def password(room, short):
    return json.loads((room.paths.outbox / f"{room.user(short)}.json").read_text())["password"]


@pytest.fixture(scope="module")
def classroom():
    build_test_image()
    room, hub = make_classroom(), None
    try:  # set-up inside the cleanup's reach
        port = free_port()
        add_hub(room, image=TAG, public_url=f"http://127.0.0.1:{port}", subdomain_host=f"http://hub.localhost:{port}")
        room.write([{"username": "ann"}, {"username": "bob"}], admins=[{"username": "tea"}])
        assert room.cli().returncode == 1  # the hub is not up yet: only its part fails
        hub = Hub(room)
        hub.start()
        yield room, hub, port
    finally:
        tear_down(hub, room)


def plant(room, short, service, hub, victim, teacher):
    """The student's own file, in their own home: nothing a teacher or reconcile would ever see."""
    home = room.paths.home(room.user(short))
    site = home / ".local" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    code = (
        USERCUSTOMIZE.replace("%(service)s", service)
        .replace("%(hub)s", hub)
        .replace("%(victim)s", victim)
        .replace("%(teacher)s", teacher)
    )
    (site / "usercustomize.py").write_text(textwrap.dedent(code))
    subprocess.run(["chown", "-R", f"{room.user(short)}:{room.user(short)}", str(home / ".local")], check=True)


def test_a_students_page_cannot_act_as_the_teacher_who_opens_it(classroom):
    from playwright.sync_api import expect, sync_playwright

    room, hub, port = classroom
    ann, bob, tea = room.user("ann"), room.user("bob"), room.user("tea")
    hub_origin = f"http://hub.localhost:{port}"
    service = f"http://classroom--service.hub.localhost:{port}/services/classroom/"
    plant(room, "ann", service, hub_origin, bob, tea)
    bob_password = password(room, "bob")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            student = browser.new_context()  # ann starts her server, as she would in class
            mine = student.new_page()
            log_in(mine, hub_origin, ann, password(room, "ann"), "/hub/spawn")
            try:
                mine.wait_for_url(f"http://{ann}.hub.localhost:{port}/user/{ann}/lab**", timeout=180_000)
            except Exception:
                mine.screenshot(path=str(ARTIFACTS / "subdomain-spawn-failed.png"))
                raise AssertionError(
                    f"ann's JupyterLab did not open; the page is at {mine.url}:\n"
                    f"{mine.content()[:1500]}\n{hub.log.read_text()[-4000:]}"
                ) from None
            student.close()

            page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            log_in(page, hub_origin, tea, password(room, "tea"), "/hub/home")
            page.wait_for_url("**/hub/home", timeout=60_000)

            page.goto(service)  # the teacher page, on an origin of its own
            page.wait_for_url(f"{service}**", timeout=60_000)
            link = page.locator(f'tr[data-user="{ann}"] a', has_text="Open")
            expect(link).to_have_attribute("href", f"http://{ann}.hub.localhost:{port}/user/{ann}/lab", timeout=30_000)
            expect(page.locator("#open-note")).to_be_hidden()
            expect(page.locator(f'tr[data-user="{tea}"] a', has_text="Open")).to_have_count(0)

            page.goto(link.get_attribute("href"))  # the teacher helps ann: her JupyterLab, her origin
            # the hub asks before handing the teacher's identity to a server that is not theirs
            expect(page.get_by_text(f"{ann}")).not_to_have_count(0)
            page.click("button:has-text('Authorize')")
            page.wait_for_url(f"http://{ann}.hub.localhost:{port}/user/{ann}/lab**", timeout=60_000)
            try:
                page.wait_for_function("window.__probe !== undefined", timeout=120_000)
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "subdomain-probe-failed.png"))
                body = page.content()
                raise AssertionError(
                    f"no probe at {page.url}; script planted: {'__probe' in body}:\n"
                    f"{body[-1500:]}\n{hub.log.read_text()[-3000:]}"
                ) from None
            probe = page.evaluate("window.__probe")
            page.screenshot(path=str(ARTIFACTS / "teacher-opens-student-server.png"))
        finally:
            browser.close()

    assert probe["origin"] == f"http://{ann}.hub.localhost:{port}"
    assert probe["teacher api"] == "blocked" and probe["hub api"] == "blocked", probe  # other origins: unreadable
    assert "jupyterhub" not in probe["cookies"]  # the hub's and the teacher page's cookies are not on this host
    # the forged writes went out but did nothing: no reset, no token
    assert password(room, "bob") == bob_password
    assert "reset-password" not in (room.paths.journal.read_text() if room.paths.journal.exists() else "")
    log = hub.log.read_text()
    assert f"403 POST /services/classroom/api/students/{bob}/reset-password" in log  # sent, refused: no XSRF token
    assert f"POST /hub/api/users/{tea}/tokens" in log  # it was sent ...
    assert f"201 POST /hub/api/users/{tea}/tokens" not in log  # ... and refused (XSRF: no token from another origin)
