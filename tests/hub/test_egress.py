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

from hostkit import host_ready, make_classroom
from hubkit import add_hub, hub_ready, tear_down
from imagekit import TAG, build_test_image, image_unavailable
from nskit import NetHost, remove_host
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
    room, far, api = make_classroom(), None, None
    try:  # set-up inside the cleanup's reach
        add_hub(room)
        room.write([{"username": "ann"}])
        hub = load_site(room.site).hub
        network.ensure_network(hub)
        far = NetHost(secrets.token_hex(2))
        api = subprocess.Popen(
            [sys.executable, "-m", "http.server", "8081", "--bind", hub.gateway],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # stands in for the hub API
        yield room, far
    finally:
        if api is not None:
            api.kill()
            api.wait()
        if far is not None:
            far.stop()
        tear_down(None, room)


def policy(room, egress):
    site = yaml.safe_load(room.site.read_text())
    site["hub"]["egress"] = egress
    room.site.write_text(yaml.safe_dump(site))
    hub = load_site(room.site).hub
    network.ensure_firewall(hub)  # what `reconcile hub` does at start
    return hub


def reach(room, far, hub) -> dict:
    targets = [
        f"{far.public}:{far.port}",
        f"{far.private}:{far.port}",
        f"{hub.gateway}:8081",
        f"{hub.gateway}:22",
        f"{far.gateway}:22",
    ]
    done = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            hub.network,
            "--label",
            f"org.classroom.classroom={room.name}",
            TAG,
            "python3",
            "-c",
            PROBE,
            *targets,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    return {
        "public": found[targets[0]],
        "private": found[targets[1]],
        "hub api": found[targets[2]],
        "host ssh": found[targets[3]],
        "host on the LAN": found[targets[4]],
    }


def test_internet_policy_reaches_the_internet_but_not_the_lan(setup):
    room, far = setup
    hub = policy(room, "internet")
    assert reach(room, far, hub) == {
        "public": "open",
        "private": "unreachable",
        "hub api": "open",
        "host ssh": "refused",
        "host on the LAN": "refused",
    }


def test_none_policy_reaches_only_the_hub_api(setup):
    room, far = setup
    hub = policy(room, "none")
    assert reach(room, far, hub) == {
        "public": "unreachable",
        "private": "unreachable",
        "hub api": "open",
        "host ssh": "refused",
        "host on the LAN": "refused",
    }


def test_an_allow_list_opens_exactly_what_it_names(setup):
    room, far = setup
    hub = policy(room, [f"{far.private}:{far.port}"])  # e.g. the school's package mirror, and nothing else
    assert reach(room, far, hub) == {
        "public": "unreachable",
        "private": "open",
        "hub api": "open",
        "host ssh": "refused",
        "host on the LAN": "refused",
    }


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


# One test host per address class, all in one namespace of ours: the host routes each /32 to it, and its own
# interface towards it is on 198.51.100.0/24 -- a school LAN numbered in public space, as universities' often
# are (a documentation range: nothing is sent anywhere but into the namespace).
RANGES = {
    "10/8": "10.213.98.2",
    "172.16/12": "172.16.98.2",
    "192.168/16": "192.168.98.2",
    "100.64/10 (CGNAT)": "100.64.98.2",
    "cloud metadata": "169.254.169.254",
    "public internet": "203.0.113.98",
}
LAN = ("198.51.100.1", "198.51.100.2")  # this server's own address on that LAN, and a machine on it


class School:
    """The namespace: a web server on every address of RANGES and on the LAN machine; set up inside its own
    cleanup's reach."""

    def __init__(self, tag: str):
        self.ns, self.host_if, self.ns_if = f"clsrm-s{tag}", f"vs{tag}h", f"vs{tag}n"
        self.server = None
        try:
            for step in (
                ["ip", "netns", "add", self.ns],
                ["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if],
                ["ip", "link", "set", self.ns_if, "netns", self.ns],
                ["ip", "link", "set", self.host_if, "up"],
                ["ip", "-n", self.ns, "addr", "add", f"{LAN[1]}/24", "dev", self.ns_if],
                *[["ip", "-n", self.ns, "addr", "add", f"{a}/32", "dev", self.ns_if] for a in RANGES.values()],
                ["ip", "-n", self.ns, "link", "set", self.ns_if, "up"],
                ["ip", "-n", self.ns, "link", "set", "lo", "up"],
            ):
                subprocess.run(step, check=True, capture_output=True)
            self.server = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, "python3", "-m", "http.server", "8080", "--bind", "0.0.0.0"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            self.stop()
            raise

    def join_the_lan(self) -> None:
        """This server gets its address on the LAN (a connected network), and routes to the other test hosts."""
        subprocess.run(["ip", "addr", "add", f"{LAN[0]}/24", "dev", self.host_if], check=True)
        subprocess.run(["ip", "-n", self.ns, "route", "add", "default", "via", LAN[0]], check=True)
        for address in RANGES.values():
            subprocess.run(["ip", "route", "add", f"{address}/32", "dev", self.host_if], check=True)

    def stop(self) -> None:
        remove_host(self.server, self.host_if, self.ns)  # the routes go with the link


def probe(room, hub, targets: dict[str, str]) -> dict:
    addresses = [f"{address}:8080" for address in targets.values()]
    done = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            hub.network,
            "--label",
            f"org.classroom.classroom={room.name}",
            TAG,
            "python3",
            "-c",
            PROBE,
            *addresses,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    return {name: found[f"{address}:8080"] for name, address in targets.items()}


def test_every_refused_range_and_the_servers_own_lan_are_probed_for_real(setup):
    """From a real container, against listeners in our own namespace: each private range and the cloud metadata
    address are refused, the public internet is open, and so is the server's own LAN only once the pass has
    seen it (it is observed each pass) -- until then a LAN in public space was reachable."""
    room, _ = setup
    school = School(secrets.token_hex(2))
    try:
        targets = {**RANGES, "the server's own LAN": LAN[1]}
        hub = policy(room, "internet")  # the chains as they were before this server joined the LAN
        school.join_the_lan()
        before = probe(room, hub, targets)
        assert before["the server's own LAN"] == "open" and before["public internet"] == "open"
        preview = room.cli("--dry-run")
        assert "~ firewall" in preview.stdout and "egress" in preview.stdout, preview.stdout
        room.cli()  # exit 1: no hub answers this classroom; the firewall part is applied all the same
        expected = {name: "unreachable" for name in targets} | {"public internet": "open"}
        assert probe(room, hub, targets) == expected
        said = next(line for line in room.cli("status").stdout.splitlines() if "nor the networks this server" in line)
        assert "198.51.100.0/24" in said
        assert "firewall" not in room.cli("--dry-run").stdout  # converged: no endless repair
        # site.yaml lets one machine of that LAN in, by address and port: it alone opens
        hub = policy(room, {"policy": "internet", "allow": [f"{LAN[1]}:8080"]})
        assert probe(room, hub, targets) == expected | {"the server's own LAN": "open"}
    finally:
        school.stop()
        policy(room, "internet")
