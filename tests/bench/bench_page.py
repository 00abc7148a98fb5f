#!/usr/bin/env python3
"""The teacher page's first paint at class size, in headless Chromium (Debian's), against a real hub and daemon.

Not a pytest test (nothing here asserts on time).  Needs root, dockerd, configurable-http-proxy, chromium.  A
throw-away classroom of N converged students and a teacher, `reconcile hub` and `reconcile watch` started; the
teacher logs in through the hub's form, then the page is loaded `--repeat` times.  For each load: the browser's
first contentful paint, the moment the table holds its first row (what a teacher sees first) and the moment it
holds all N rows, from the navigation's start (the Performance API's clock, in the page).  Prints p50/p95 of each
and the GET api/students alone (in the page, with fetch) for comparison.  Target (issue #14): the table's first
paint <= 1 s with 1000 rows.

    .venv/bin/python tests/bench/bench_page.py [--n 1000] [--repeat 7] [--width 1400]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hubbench as hb  # noqa: E402  (puts tests/ on sys.path)

from hostkit import cleanup  # noqa: E402
from hubkit import Hub, chromium_missing, launch_chromium, log_in  # noqa: E402

WATCH = """(n) => new Promise((resolve) => {
  const seen = {first: null, all: null};
  const look = () => {
    const rows = document.querySelectorAll('tr[data-user]').length;
    const now = performance.now();
    if (rows > 0 && seen.first === null) seen.first = now;
    if (rows >= n && seen.all === null) seen.all = now;
    if (seen.all !== null) {
      const paint = performance.getEntriesByName('first-contentful-paint')[0];
      resolve({...seen, fcp: paint ? paint.startTime : null});
    } else requestAnimationFrame(look);
  };
  look();
})"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="students in the class")
    parser.add_argument("--repeat", type=int, default=7, help="page loads timed")
    parser.add_argument("--width", type=int, default=1400, help="the window's width (390: a phone)")
    args = parser.parse_args()
    reason = hb.cannot_run() or chromium_missing()
    if reason:
        print(f"cannot run: {reason}")
        return 1
    from playwright.sync_api import sync_playwright

    room = hb.big_class(args.n)
    hub = Hub(room)
    daemon = None
    loads: list[dict] = []
    api_times: list[float] = []
    try:
        if not hb.converge_and_start(room, hub, args.n):
            return 1
        daemon = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "watch", "--site", str(room.site), "-f", str(room.file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while not (room.paths.snapshot.exists() and room.paths.snapshot.stat().st_mtime > room.file.stat().st_mtime):
            if time.monotonic() > deadline:
                print("the daemon wrote no snapshot.json")
                return 1
            time.sleep(0.5)
        teacher = room.user("tea")
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                page = browser.new_page(viewport={"width": args.width, "height": 900})
                log_in(page, hub.url, teacher, hb.password(room, teacher), "/services/classroom/")
                page.wait_for_url("**/services/classroom/", timeout=60_000)
                page.wait_for_selector("tr[data-user]", timeout=120_000)
                for _ in range(args.repeat):
                    page.reload(wait_until="commit")
                    loads.append(page.evaluate(WATCH, args.n + 1))  # the students and the teacher
                for _ in range(args.repeat):
                    status, ms, count = page.evaluate("""async () => { const t = performance.now();
                        const xsrf = document.querySelector('meta[name="xsrf"]').content;
                        const r = await fetch('api/students', {cache: 'no-store', headers: {'X-XSRFToken': xsrf}}); const body = await r.json();
                        return [r.status, performance.now() - t, (body.students || []).length]; }""")
                    if status != 200 or count != args.n + 1:
                        print(f"api/students from the page: HTTP {status}, {count} people")
                        return 1
                    api_times.append(ms)
            finally:
                browser.close()
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(timeout=60)
        hub.stop()
        hub.remove_network()
        cleanup(room)

    def line(what: str, values: list[float]) -> str:
        return f"{what}: p50 {statistics.median(values):.0f} ms, p95 {hb.percentile(values, 95):.0f} ms"

    print("\n" + "=" * 90)
    print(f"machine: {os.cpu_count()} cores; N={args.n}; {args.repeat} page loads at {args.width} px")
    print(line("first contentful paint", [x["fcp"] for x in loads if x["fcp"] is not None]))
    print(line("the table's first row on screen", [x["first"] for x in loads]) + " (target <= 1000 ms)")
    print(line(f"all {args.n + 1} rows", [x["all"] for x in loads]))
    print(line("GET api/students alone, from the page", api_times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
