"""The host firewall the students' bridge needs, as data: the exact rules, in `iptables -S` form.

Two chains of our own, each reached by one jump:

* ``input``  (from INPUT, ``-i <bridge>``): what containers may reach on the host itself: replies, and the
  hub API on the bridge gateway; everything else is refused (the proxy, sshd, a database).
* ``egress`` (from DOCKER-USER, which Docker's FORWARD chain runs first, ``-i <bridge>``): where containers
  may connect beyond the host, per site.yaml's ``hub.egress``.

The rules are written in the form `iptables -S` prints them, so the same lines are what the driver adds
and what observing the host compares against: a rule changed or deleted by hand (or a firewall reload
that dropped the chains) is drift the next pass repairs.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from ..config.site import HUB_PORT, PRIVATE_RANGES, HubSettings

REFUSE = "--reject-with icmp-admin-prohibited"  # fails at once ("administratively prohibited"), no timeout


def bridge_name(network: str) -> str:
    """The students' bridge interface (Linux names have at most 15 characters)."""
    return "clsrm-" + hashlib.sha256(network.encode()).hexdigest()[:8]


def _digest(network: str) -> str:
    return hashlib.sha256(network.encode()).hexdigest()[:8].upper()


@dataclass(frozen=True)
class Chain:
    """One chain of ours: its rules, and the rule in a built-in chain that jumps to it."""

    name: str
    parent: str  # INPUT or DOCKER-USER
    jump: str  # the jump rule, as `iptables -S` prints it
    rules: tuple[str, ...]


def chains(hub: HubSettings, host_networks: tuple[str, ...] = ()) -> dict[str, Chain]:
    """What the host should have for this hub: {"input": ..., "egress": ...}.

    ``host_networks``: the networks this server's own interfaces are on (observed each pass): with
    ``egress: internet`` they are refused like the private ranges -- a school LAN numbered in public space
    (universities often are) is still the school's LAN.  An ``allow`` entry opens a part of one again.
    None with the swarm spawner: student servers run on the workers, not on a bridge of this host.
    """
    if hub.spawner == "swarm":
        return {}
    bridge = bridge_name(hub.network)
    incoming = f"CLSRM-{_digest(hub.network)}"
    outgoing = f"CLSRM-OUT-{_digest(hub.network)}"
    input_rules = (
        f"-A {incoming} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        f"-A {incoming} -d {hub.gateway}/32 -p tcp -m tcp --dport {HUB_PORT} -j ACCEPT",
        f"-A {incoming} -p tcp -j REJECT --reject-with tcp-reset",
        f"-A {incoming} -j REJECT --reject-with icmp-port-unreachable",
    )
    egress = [f"-A {outgoing} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"]
    for entry in hub.egress.allow:
        where, _, port = entry.partition(":")
        if port:
            number, _, proto = port.partition("/")
            egress.append(f"-A {outgoing} -d {where} -p {proto} -m {proto} --dport {number} -j RETURN")
        else:
            egress.append(f"-A {outgoing} -d {where} -j RETURN")
    if hub.egress.policy == "internet":
        refused = [*PRIVATE_RANGES, *lan_outside_private(host_networks, hub.subnet)]
        egress += [f"-A {outgoing} -d {cidr} -j REJECT {REFUSE}" for cidr in refused]
    else:
        egress.append(f"-A {outgoing} -j REJECT {REFUSE}")
    return {
        "input": Chain(incoming, "INPUT", f"-A INPUT -i {bridge} -j {incoming}", input_rules),
        "egress": Chain(outgoing, "DOCKER-USER", f"-A DOCKER-USER -i {bridge} -j {outgoing}", tuple(egress)),
    }


def lan_outside_private(host_networks: tuple[str, ...], students: str) -> list[str]:
    """The host's networks that the private ranges do not already cover (nor the students' own bridge), sorted."""
    private = [ipaddress.IPv4Network(cidr) for cidr in PRIVATE_RANGES]
    bridge = ipaddress.IPv4Network(students, strict=False)
    found = set()
    for cidr in host_networks:
        network = ipaddress.IPv4Network(cidr, strict=False)
        if not network.overlaps(bridge) and not any(network.subnet_of(p) for p in private):
            found.add(network)
    return [str(n) for n in sorted(found)]


def in_force(chain: Chain, lines: tuple[str, ...]) -> bool:
    """Does the host (``lines``: what `iptables -S` shows of our chains) have exactly this chain and its jump?"""
    return f"-N {chain.name}" in lines and chain.jump in lines and rules_of(chain.name, lines) == chain.rules


def rules_of(name: str, lines: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(line for line in lines if line.startswith(f"-A {name} "))


def reaches(hub: HubSettings, host_networks: tuple[str, ...] = ()) -> list[str]:
    """In words, what a student container can reach: for the docs, `reconcile status` and the page."""
    if hub.swarm is not None:
        return [
            f"the hub API ({hub.swarm.address}:{HUB_PORT}) from the swarm's workers; hub.egress is not "
            "enforced there yet: each worker's own firewall decides (docs/how-to/beyond-one-server.md)"
        ]
    said = [f"the hub API ({hub.gateway}:{HUB_PORT}); nothing else on this host"]
    allowed = ", ".join(hub.egress.allow)
    if hub.egress.policy == "internet":
        lan = lan_outside_private(host_networks, hub.subnet)
        said.append(
            "the public internet; no private, CGNAT, link-local (cloud metadata) or multicast address"
            + (f", nor the networks this server is on ({', '.join(lan)})" if lan else "")
            + (f" except {allowed}" if allowed else "")
        )
    else:
        said.append(f"only {allowed}" if allowed else "no other address (egress: none)")
    return said
