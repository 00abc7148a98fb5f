"""The students' Docker bridge and the host firewall rules that fence it.

Containers sit on their own bridge with inter-container traffic disabled, so
one student cannot reach another's server.  On the host, traffic arriving
from that bridge may reach only the hub API port; anything else (the proxy,
sshd, a database) is refused.  The proxy's API listens on loopback only.
"""

from __future__ import annotations

import hashlib

from ..config.site import HUB_PORT, HubSettings
from ..host.run import run, succeeds


def bridge_name(network: str) -> str:
    """Linux interface names have at most 15 characters."""
    return "clsrm-" + hashlib.sha256(network.encode()).hexdigest()[:8]


def chain_name(network: str) -> str:
    return "CLSRM-" + hashlib.sha256(network.encode()).hexdigest()[:8].upper()


def ensure_network(hub: HubSettings) -> str:
    """Create the bridge if missing; return the gateway address the hub listens on."""
    import docker

    client = docker.from_env()
    if not client.networks.list(names=[hub.network]):
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=hub.subnet, gateway=hub.gateway)])
        client.networks.create(hub.network, driver="bridge", ipam=ipam, options={
            "com.docker.network.bridge.enable_icc": "false",
            "com.docker.network.bridge.name": bridge_name(hub.network),
        })
    return hub.gateway


def ensure_firewall(hub: HubSettings) -> None:
    """INPUT from the students' bridge: replies and the hub API only; everything else is refused."""
    chain, bridge = chain_name(hub.network), bridge_name(hub.network)
    if not succeeds(["iptables", "-w", "-n", "-L", chain]):
        run(["iptables", "-w", "-N", chain])
    run(["iptables", "-w", "-F", chain])
    run(["iptables", "-w", "-A", chain, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"])
    run(["iptables", "-w", "-A", chain, "-p", "tcp", "-d", hub.gateway, "--dport", str(HUB_PORT),
         "-j", "ACCEPT"])
    run(["iptables", "-w", "-A", chain, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"])
    run(["iptables", "-w", "-A", chain, "-j", "REJECT"])
    jump = ["INPUT", "-i", bridge, "-j", chain]
    if not succeeds(["iptables", "-w", "-C", *jump]):
        run(["iptables", "-w", "-I", *jump])


def remove(hub: HubSettings) -> None:
    """Undo ensure_network and ensure_firewall (tests; uninstall)."""
    import docker

    chain, bridge = chain_name(hub.network), bridge_name(hub.network)
    run(["iptables", "-w", "-D", "INPUT", "-i", bridge, "-j", chain], ok_codes=(0, 1, 2))
    run(["iptables", "-w", "-F", chain], ok_codes=(0, 1))
    run(["iptables", "-w", "-X", chain], ok_codes=(0, 1))
    for network in docker.from_env().networks.list(names=[hub.network]):
        network.remove()
