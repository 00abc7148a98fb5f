"""The teacher page in a real browser, against a real hub, daemon and student server.

Headless Chromium (Debian's) logs in through the hub's form and OAuth, sees
the class with its usage bars (one student's server runs, so memory use is
real), changes a quota and adds a student; the changes reach classroom.yaml
and then, through the running daemon, the host.  Screenshots are kept in
tests/artifacts/.
"""

import datetime
import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from hostkit import host_ready, make_classroom
from hubkit import (
    ARTIFACTS,
    Hub,
    add_hub,
    chromium_missing,
    hub_ready,
    launch_chromium,
    log_in,
    start_server,
    tear_down,
    wait_for,
)
from imagekit import TAG, build_test_image, image_unavailable

REASON = host_ready() or hub_ready() or image_unavailable() or chromium_missing()
pytestmark = pytest.mark.skipif(bool(REASON), reason=str(REASON))
MiB = 1024**2


def password(room, short):
    return json.loads((room.paths.outbox / f"{room.user(short)}.json").read_text())["password"]


def measure(page, selector):
    """Every match's box, read in one go (a pushed refresh may replace the rows between two calls)."""
    return page.evaluate(
        """(selector) => [...document.querySelectorAll(selector)].map((e) => {
        const r = e.getBoundingClientRect(); return {x: r.x, y: r.y, width: r.width, height: r.height}; })""",
        selector,
    )


@pytest.fixture(scope="module")
def classroom():
    build_test_image()
    room, hub, daemon = make_classroom(), None, None
    try:  # set-up inside the cleanup's reach
        room.quotas = {
            "default": {"memory": "256Mi", "cpu": 1, "disk": "128Mi"},
            "big": {"memory": "512Mi", "cpu": 1, "disk": "256Mi"},
        }
        add_hub(room, image=TAG)
        tomorrow = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[
            (datetime.datetime.now(datetime.UTC).weekday() + 1) % 7
        ]
        room.root.chmod(0o755)
        (room.root / "shared" / "hw1").mkdir(parents=True)
        (room.root / "shared" / "hw1" / "exercise.ipynb").write_text("{}")
        (room.root / "shared" / "hw1" / "exercise.ipynb").chmod(0o644)
        now = datetime.datetime.now(datetime.UTC)
        hw1 = {
            "name": "hw1",
            "source": "hw1",
            "release": f"{now - datetime.timedelta(hours=2):%Y-%m-%d %H:%M}",
            "due": f"{now + datetime.timedelta(days=1):%Y-%m-%d %H:%M}",
        }
        people = dict(
            admins=[{"username": "tea"}],
            schedule=[{"days": [tomorrow], "start": "09:00", "end": "10:00", "tz": "UTC"}],
            collection_disk="128Mi",
        )
        room.write([{"username": "ann"}, {"username": "bob"}], assignments=[hw1], **people)
        assert room.cli().returncode == 1  # the hub is not up yet: only its part fails; hw1 is handed out
        time.sleep(1.1)  # then it falls due (to the second), after the copies: the daemon collects them on time
        hw1["due"] = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M:%S}"
        room.write([{"username": "ann"}, {"username": "bob"}], assignments=[hw1], **people)
        hub = Hub(room)
        hub.start()
        teacher_password = password(room, "tea")
        session = hub.login(room.user("ann"), password(room, "ann"))
        start_server(hub, session, room.user("ann"))
        daemon = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "watch", "--site", str(room.site), "-f", str(room.file)],
            stdout=open(room.root / "daemon.log", "ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: (room.paths.state / "status.json").exists(), 120, "the daemon's first pass")
        yield room, hub, teacher_password
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(timeout=60)
        tear_down(hub, room)


def test_teacher_page_shows_the_class_and_changes_reach_the_host(classroom):
    from playwright.sync_api import expect, sync_playwright

    room, hub, teacher_password = classroom
    ann, bob = room.user("ann"), room.user("bob")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            dialogs, answer = [], {"accept": True}

            def on_dialog(dialog):
                dialogs.append(dialog.message)
                if not answer["accept"]:
                    dialog.dismiss()
                elif dialog.type == "prompt":
                    dialog.accept(answer.get("prompt", ""))
                else:
                    dialog.accept()

            page.on("dialog", on_dialog)
            log_in(page, hub.url, room.user("tea"), teacher_password, "/services/classroom/")
            page.wait_for_url("**/services/classroom/", timeout=60_000)

            # the class, with usage bars: disk for everyone, memory for ann's running server
            expect(page.locator(f'tr[data-user="{ann}"] meter').first).to_be_visible(timeout=30_000)
            ann_row = page.locator(f'tr[data-user="{ann}"]')
            expect(ann_row).to_contain_text("running")
            meters = ann_row.locator("meter")
            expect(meters).to_have_count(2)
            disk_used, disk_max = meters.nth(0).evaluate("m => [m.value, m.max]")
            memory_used, memory_max = meters.nth(1).evaluate("m => [m.value, m.max]")
            assert 0 < disk_used < disk_max == 128 * MiB
            assert 0 < memory_used < memory_max == 256 * MiB  # read from the server's cgroup
            expect(page.locator("#last-pass")).to_contain_text("converged")
            # the next lesson and its pre-warm: ann's server will be started before it; bob never logged in
            expect(page.locator("#lesson-card")).to_be_visible()
            expect(page.locator("#lesson")).to_contain_text("1 server(s) start from")
            expect(page.locator("#lesson")).to_contain_text("1 not pre-started")
            # one origin: no way to open a student's server from here, and the page says why
            expect(page.locator("#open-note")).to_contain_text("per-user subdomains")
            expect(ann_row.locator("a", has_text="Open")).to_have_count(0)
            # the assignment: handed out, collected by the daemon while ann's server ran, each student's verdict
            work = page.locator('#assignments .assignment[data-assignment="hw1"]')
            expect(work).to_contain_text("handed out 2/2", timeout=30_000)
            expect(work).to_contain_text("on time 2", timeout=30_000)
            work.locator("summary").click()
            expect(work.locator(f'li[data-user="{ann}"]')).to_contain_text("on time")
            # "Extend…" for bob: written into classroom.yaml's assignment, comments kept
            answer["prompt"] = "2d"
            work.locator(f'li[data-user="{bob}"] button', has_text="Extend").click()
            expect(page.locator("#message")).to_contain_text(f"{bob} has 2d more for hw1")
            assert f"How much longer for {bob} on hw1?" in dialogs[-1]
            written = yaml.safe_load(room.file.read_text())["assignments"][0]
            assert written["extensions"] == {bob: "2d"}
            page.screenshot(path=str(ARTIFACTS / "teacher-page.png"), full_page=True)

            # live: a change made elsewhere (here: the file, by hand) is pushed to the page (server-sent events);
            # while the stream is up the page polls only once a minute, so the new name can only come by push
            try:
                expect(page.locator("body")).to_have_attribute("data-live", "true", timeout=30_000)
            except AssertionError:
                probe = page.evaluate("fetch('api/events').then(r => r.status + ' ' + r.headers.get('content-type'))")
                raise AssertionError(f"no event stream: {probe}\n{hub.log.read_text()[-3000:]}") from None
            page.click("#refresh")
            renamed = room.file.read_text().replace("name: Bob\n", "name: Bob Renamed\n", 1)
            assert "Bob Renamed" in renamed
            room.file.write_text(renamed)
            expect(page.locator(f'tr[data-user="{bob}"]')).to_contain_text("Bob Renamed", timeout=20_000)

            # change bob's quota: classroom.yaml first, then the daemon grows his volume
            page.select_option(f'select[data-user="{bob}"]', "big")
            expect(page.locator("#message")).to_contain_text("classroom.yaml is updated")
            assert f"{bob}'s disk changes from 128 MiB to 256 MiB" in dialogs[-1]  # asked first, sizes shown
            people = {p["username"]: p for p in yaml.safe_load(room.file.read_text())["students"]}
            assert people[bob]["quota"] == "big"
            wait_for(
                lambda: (v := room.observe().volumes.get(bob)) is not None and v.size >= 256 * MiB,
                180,
                "the daemon to grow bob's volume",
            )

            # add a student through the form; the daemon creates the account
            page.click("#add")
            page.fill('#person-form input[name="name"]', "Lovelace, Ada")  # as the school's list writes it
            expect(page.locator('#person-form input[name="username"]')).to_have_attribute(
                "placeholder", "will be: alovelace", timeout=10_000
            )  # the import's rule, before saving
            page.fill('#person-form input[name="username"]', room.user("ada"))
            page.click("#person-save")
            expect(page.locator("#message")).to_contain_text("saved to classroom.yaml")
            expect(page.locator("#message")).to_contain_text('waits for "Print credential slips"')  # no e-mail
            assert "name: Ada Lovelace" in room.file.read_text() and "quota: default" not in room.file.read_text()
            wait_for(lambda: room.user("ada") in room.observe().accounts, 180, "the daemon to create ada's account")

            # import a CSV: preview first, then add
            page.click("#import")
            page.set_input_files(
                '#import-form input[name="file"]',
                files=[
                    {
                        "name": "class.csv",
                        "mimeType": "text/csv",
                        "buffer": f"Nome;Cognome;Username\nGrace;Hopper;{room.user('gra')}\n".encode(),
                    }
                ],
            )
            page.click("#import-check")
            expect(page.locator("#import-preview")).to_contain_text("1 to add")
            page.click("#import-save")
            expect(page.locator("#message")).to_contain_text("1 student(s) imported")
            assert room.user("gra") in room.file.read_text()

            page.click("#refresh")
            expect(page.locator(f'tr[data-user="{bob}"]')).to_contain_text("/ 256 MiB", timeout=30_000)
            expect(page.locator(f'tr[data-user="{room.user("ada")}"]')).to_contain_text("enabled", timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "teacher-page-after.png"), full_page=True)

            # a disk change for a running server says it waits; the teacher can say no, and nothing changes
            answer["accept"] = False
            before = room.file.read_text()
            page.select_option(f'select[data-user="{ann}"]', "big")
            assert "Their server is running: the change waits until it stops" in dialogs[-1]
            expect(page.locator(f'select[data-user="{ann}"]')).to_have_value("default")
            assert room.file.read_text() == before
            answer["accept"] = True

            # removed from the file by hand: "Enable again" puts them back; never created: "not created"
            zed = room.user("zed")
            doc = yaml.safe_load(before)
            doc["students"].append({"username": zed, "name": "Zed Never", "status": "disabled"})
            room.file.write_text(yaml.safe_dump(doc, sort_keys=False))
            page.click("#refresh")
            zed_account = page.locator(f'tr[data-user="{zed}"] td[data-label="Account"]')
            expect(zed_account).to_contain_text("not created", timeout=30_000)
            assert "warn" not in (zed_account.get_attribute("class") or "")  # grey, not an orange "missing"
            room.file.write_text(before)
            ada = room.user("ada")
            doc = yaml.safe_load(before)
            doc["students"] = [p for p in doc["students"] if p.get("username") != ada]
            room.file.write_text(yaml.safe_dump(doc, sort_keys=False))
            wait_for(lambda: room.observe().accounts[ada].locked, 180, "the daemon to disable ada")
            page.click("#refresh")
            again = page.locator(f'tr[data-user="{ada}"] button', has_text="Enable again")
            expect(again).to_be_visible(timeout=30_000)
            again.click()
            expect(page.locator("#message")).to_contain_text(f"{ada} is back in classroom.yaml")
            assert any(
                p.get("username") == ada and p.get("name") == "Ada Lovelace"
                for p in yaml.safe_load(room.file.read_text())["students"]
            )
            wait_for(lambda: not room.observe().accounts[ada].locked, 180, "the daemon to enable ada again")

            # a broken save (by hand, on the server): the class in force stays on the page, with the reason
            good = room.file.read_text()
            room.file.write_text(good + "quotass: {}\n")  # a typo'd key
            try:
                page.click("#refresh")
                note = page.locator("#invalid-note")
                expect(note).to_be_visible(timeout=30_000)
                expect(note).to_contain_text("classroom.yaml is invalid")
                expect(note).to_contain_text("quotass")
                expect(note).to_contain_text("classroom.yaml:")  # file:line
                expect(note).to_contain_text("changed on this server at")
                expect(page.locator(f'tr[data-user="{ann}"]')).to_contain_text("running")  # the class in force
                expect(page.locator("#classroom")).to_have_text(room.name)
                expect(page.locator("#add")).to_be_disabled()
                page.screenshot(path=str(ARTIFACTS / "teacher-page-invalid-file.png"), full_page=True)
            finally:
                room.file.write_text(good)
            page.click("#refresh")
            expect(page.locator("#invalid-note")).to_be_hidden(timeout=30_000)

            # a change is made on the version the page shows (If-Match): someone else's save meanwhile is never
            # overwritten; the page says what changed, and the same click then saves on the file as it is now
            page.locator(f'tr[data-user="{bob}"] button', has_text="Edit").click()
            page.fill('#person-form input[name="email"]', "bob@example.org")
            meanwhile = room.file.read_text().replace("name: Ann\n", "name: Ann Meanwhile\n", 1)
            assert "Ann Meanwhile" in meanwhile
            swap = room.file.with_name(".classroom.yaml.swp")  # an editor's save, by rename
            swap.write_text(meanwhile)
            os.replace(swap, room.file)
            page.click("#person-save")
            problems = page.locator("#person-form .problems")
            expect(problems).to_contain_text("changed since this page showed it", timeout=20_000)
            expect(problems).to_contain_text(f"{ann} was changed")
            assert "bob@example.org" not in room.file.read_text() and "Ann Meanwhile" in room.file.read_text()
            page.screenshot(path=str(ARTIFACTS / "teacher-page-stale.png"), full_page=True)
            page.click("#person-save")
            expect(page.locator("#message")).to_contain_text("saved to classroom.yaml")
            assert "bob@example.org" in room.file.read_text() and "Ann Meanwhile" in room.file.read_text()

            # an invalid value: the form shows the API's problem details, the detail and the field at fault
            saved = room.file.read_text()
            page.locator(f'tr[data-user="{bob}"] button', has_text="Edit").click()
            page.fill('#person-form input[name="memory"]', "lots")
            page.click("#person-save")
            problems = page.locator("#person-form .problems")
            expect(problems).to_contain_text("invalid input; classroom.yaml was not changed", timeout=20_000)
            expect(problems).to_contain_text("memory: 'lots' is not a size")
            assert room.file.read_text() == saved
            page.locator('#person-form button[value="cancel"]').click()
            expect(page.locator("#person-dialog")).to_be_hidden()

            # a phone and a tablet: nothing scrolls sideways, every action is on screen, buttons do not touch
            for width, height in ((390, 844), (768, 1024)):
                page.set_viewport_size({"width": width, "height": height})
                page.reload()
                expect(page.locator(f'tr[data-user="{ann}"]')).to_contain_text("running", timeout=30_000)
                assert page.evaluate("document.documentElement.scrollWidth") <= width
                boxes = measure(page, "#students button, #students a.button, .toolbar button")
                assert boxes and all(b["x"] >= 0 and b["x"] + b["width"] <= width for b in boxes), (width, boxes)
                for row in (ann, bob):
                    found = measure(page, f'tr[data-user="{row}"] .actions button')
                    for a, b in zip(found, found[1:], strict=False):
                        apart = (
                            b["x"] - (a["x"] + a["width"])
                            if abs(a["y"] - b["y"]) < 4
                            else b["y"] - (a["y"] + a["height"])
                        )
                        assert apart >= 4, (width, row, a, b)
                expect(page.locator(f'tr[data-user="{ann}"] td[data-label="Disk"]')).to_be_visible()
                expect(page.locator('#assignments .assignment[data-assignment="hw1"]')).to_be_visible()
                page.screenshot(path=str(ARTIFACTS / f"teacher-page-{width}px.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "teacher-page.png").stat().st_size > 10_000
