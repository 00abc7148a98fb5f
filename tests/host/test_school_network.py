"""The image build behind a school's proxy and package mirror (site.yaml network:), with real pip.

The test runs a small HTTP proxy on 127.0.0.1 that counts what passes through it and answers for
`mirror.school.test` itself (a name that resolves nowhere: only the proxy can reach it), serving a
simple index with one wheel.  The build's own wheel download (`pip download`, as `reconcile image
build` runs it) must go through the proxy to the mirror; nothing leaves this machine.
"""

import argparse
import hashlib
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from imagekit import make_tiny_wheel
from reconciler.cli.commands import site_of
from reconciler.image import build

MIRROR = "mirror.school.test"


@pytest.fixture
def school_proxy(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "wheels").mkdir()
    wheel = make_tiny_wheel(tmp_path / "src", tmp_path / "wheels")
    data = wheel.read_bytes()
    seen = []

    class Proxy(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            seen.append(self.path)  # a proxy receives the absolute URL
            if self.path == f"http://{MIRROR}/simple/hello-student/":
                digest = hashlib.sha256(data).hexdigest()
                body = (
                    f'<html><body><a href="http://{MIRROR}/packages/{wheel.name}#sha256={digest}">'
                    f"{wheel.name}</a></body></html>"
                ).encode()
                kind = "text/html"
            elif self.path == f"http://{MIRROR}/packages/{wheel.name}":
                body, kind = data, "application/octet-stream"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    saved = dict(os.environ)
    try:
        yield server.server_address[1], seen
    finally:
        os.environ.clear()
        os.environ.update(saved)  # site_of put the school's settings into this process's environment
        server.shutdown()
        server.server_close()


def test_the_wheel_download_goes_through_the_schools_proxy_to_its_mirror(school_proxy, tmp_path):
    port, seen = school_proxy
    site = tmp_path / "site.yaml"
    site.write_text(
        f"state_dir: state\nnetwork:\n  proxy: http://127.0.0.1:{port}\n  pip_index: http://{MIRROR}/simple\n"
    )
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "NO_PROXY", "no_proxy", "PIP_INDEX_URL"):
        os.environ.pop(name, None)
    site_of(argparse.Namespace(site=str(site)))  # what every command does first
    dest = tmp_path / "downloaded"
    dest.mkdir()
    build._step(
        "downloading wheels on the host (pip download)", build._download_argv(dest, ["hello-student==0.1"], deps=False)
    )
    assert [p.name for p in dest.glob("*.whl")] == ["hello_student-0.1-py3-none-any.whl"]
    assert f"http://{MIRROR}/simple/hello-student/" in seen  # asked the mirror, through the proxy
    assert any(path.endswith(".whl") for path in seen)
