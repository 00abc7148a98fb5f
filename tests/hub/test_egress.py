"""What student containers can reach (site.yaml hub.egress), on real iptables, Docker and a test host.

The test host lives in a network namespace this test creates, with a web server on a private address
(10.213.x.2: a school LAN) and on a "public" one (203.0.113.x: a documentation range standing in for the
internet); the host routes only those two addresses to it.  A container on the classroom's own bridge
probes them, and the host itself, under each policy.  No traffic leaves this machine.
"""

import json
import secrets
import subprocess
import sys

import pytest
import yaml

from hostkit import cleanup, host_ready, make_classroom
from hubkit import add_hub, hub_ready
from imagekit import TAG, build_test_image, image_unavailable
from nskit import NetHost
from reconciler.config.load import load_site
from reconciler.hub import network

REASON = host_ready() or hub_ready() or image_unavailable()
pytestmark = pytest.mark.skipif(bool(REASON), reason=str(REASON))

PROBE = """
import json, socket, sys
out = {}
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    s = socket.socket()
    s.settimeout(4)
    try:
        s.connect((host, int(port)))
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        out[target] = "open" if s.recv(12).startswith(b"HTTP/1.0") else "odd answer"
    except ConnectionRefusedError:
        out[target] = "refused"
    except socket.timeout:
        out[target] = "timeout"
    except OSError as exc:
        out[target] = "unreachable" if exc.errno == 113 else f"errno {exc.errno}"
    finally:
        s.close()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def setup():
    build_test_image()
    room = make_classroom()
    add_hub(room)
    room.write([{"username": "ann"}])
    hub = load_site(room.site).hub
    network.ensure_network(hub)
    far = NetHost(secrets.token_hex(2))
    api = subprocess.Popen([sys.executable, "-m", "http.server", "8081", "--bind", hub.gateway],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # stands in for the hub API
    try:
        yield room, far
    finally:
        api.kill()
        api.wait()
        far.stop()
        network.remove(load_site(room.site).hub)
        cleanup(room)


def policy(room, egress):
    site = yaml.safe_load(room.site.read_text())
    site["hub"]["egress"] = egress
    room.site.write_text(yaml.safe_dump(site))
    hub = load_site(room.site).hub
    network.ensure_firewall(hub)  # what `reconcile hub` does at start
    return hub


def reach(room, far, hub) -> dict:
    targets = [f"{far.public}:{far.port}", f"{far.private}:{far.port}", f"{hub.gateway}:8081", f"{hub.gateway}:22",
               f"{far.gateway}:22"]
    done = subprocess.run(["docker", "run", "--rm", "--network", hub.network, "--label",
                           f"org.classroom.classroom={room.name}", TAG, "python3", "-c", PROBE, *targets],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    return {"public": found[targets[0]], "private": found[targets[1]], "hub api": found[targets[2]],
            "host ssh": found[targets[3]], "host on the LAN": found[targets[4]]}


def test_internet_policy_reaches_the_internet_but_not_the_lan(setup):
    room, far = setup
    hub = policy(room, "internet")
    assert reach(room, far, hub) == {"public": "open", "private": "unreachable", "hub api": "open",
                                     "host ssh": "refused", "host on the LAN": "refused"}


def test_none_policy_reaches_only_the_hub_api(setup):
    room, far = setup
    hub = policy(room, "none")
    assert reach(room, far, hub) == {"public": "unreachable", "private": "unreachable", "hub api": "open",
                                     "host ssh": "refused", "host on the LAN": "refused"}


def test_an_allow_list_opens_exactly_what_it_names(setup):
    room, far = setup
    hub = policy(room, [f"{far.private}:{far.port}"])  # e.g. the school's package mirror, and nothing else
    assert reach(room, far, hub) == {"public": "unreachable", "private": "open", "hub api": "open",
                                     "host ssh": "refused", "host on the LAN": "refused"}


def test_the_reconcile_pass_repairs_rules_changed_by_hand(setup):
    room, far = setup
    hub = policy(room, "internet")
    chain = network.chains(hub)["egress"]
    subprocess.run(["iptables", "-w", "-D", *chain.rules[2].split()[1:]], check=True)  # 10/8 no longer refused
    assert reach(room, far, hub)["private"] == "open"

    preview = room.cli("--dry-run")
    assert "~ firewall" in preview.stdout and "egress" in preview.stdout, preview.stdout
    room.cli()  # exit 1 here: no hub answers this classroom; the firewall part is applied all the same
    assert reach(room, far, hub)["private"] == "unreachable"
    after = room.cli("--dry-run")
    assert "firewall" not in after.stdout, after.stdout  # converged: no endless repair

    subprocess.run(["iptables", "-w", "-D", *chain.jump.split()[1:]], check=True)  # the jump from DOCKER-USER
    assert reach(room, far, hub)["private"] == "open"
    room.cli()
    assert reach(room, far, hub)["private"] == "unreachable"
