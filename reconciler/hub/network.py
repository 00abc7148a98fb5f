"""The students' Docker bridge and the host firewall rules that fence it.

Containers sit on their own bridge with inter-container traffic disabled, so
one student cannot reach another's server.  On the host, traffic arriving
from that bridge may reach only the hub API port; anything else (the proxy,
sshd, a database) is refused.  Beyond the host, site.yaml's ``hub.egress``
decides (core.firewall has the rules; every reconcile pass repairs them).
The proxy's API listens on loopback only.
"""

from __future__ import annotations

from ..config.site import HubSettings
from ..core.firewall import bridge_name, chains
from ..host import firewall
from ..host.run import Runner


def ensure_network(hub: HubSettings) -> str:
    """Create the bridge if missing; return the gateway address the hub listens on."""
    import docker

    client = docker.from_env()
    if not client.networks.list(names=[hub.network]):
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=hub.subnet, gateway=hub.gateway)])
        client.networks.create(
            hub.network,
            driver="bridge",
            ipam=ipam,
            options={
                "com.docker.network.bridge.enable_icc": "false",
                "com.docker.network.bridge.name": bridge_name(hub.network),
            },
        )
    return hub.gateway


def ensure_firewall(hub: HubSettings) -> dict[str, str]:
    """The students' chains (core.firewall): INPUT (the hub API only) and egress (site.yaml's hub.egress)."""
    return {key: firewall.apply_chain(chain, Runner()) for key, chain in chains(hub, firewall.host_networks()).items()}


def remove(hub: HubSettings) -> None:
    """Undo ensure_network and ensure_firewall (tests; uninstall)."""
    import docker

    for chain in chains(hub).values():
        firewall.remove_chain(chain, Runner())
    for network in docker.from_env().networks.list(names=[hub.network]):
        network.remove()
