"""The students' firewall on the host (iptables): observed in one call, each chain replaced atomically.

The rules themselves are data (``core.firewall``).  Observing runs `iptables -S` once and keeps the lines
that concern our chains; the driver replaces a whole chain with one `iptables-restore --noflush`
transaction (the chain is never empty or half written while traffic flows) and then makes sure the one
jump to it exists.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..core.actions import Action, Kind, Op
from ..core.firewall import Chain, in_force
from .drivers import Context, driver
from .run import CommandFailed, Runner

OURS = "CLSRM-"  # every chain of ours is named so


def host_networks() -> tuple[str, ...]:
    """The IPv4 networks of this host's own interface addresses (the LANs it is on), loopback aside: one look at
    the interfaces (psutil), each pass, so a network added or renumbered is fenced at the next pass."""
    import ipaddress
    import socket

    import psutil

    found = set()
    for interface, addresses in psutil.net_if_addrs().items():
        if interface == "lo":
            continue
        for address in addresses:
            if address.family == socket.AF_INET and address.netmask:
                found.add(str(ipaddress.IPv4Network(f"{address.address}/{address.netmask}", strict=False)))
    return tuple(sorted(found))


def observe(run: Runner) -> tuple[str, ...] | None:
    """The filter table's lines that mention one of our chains (declarations, rules, jumps), in order.

    None when iptables cannot be asked (not installed, no permission): the plan says so.
    """
    try:
        out = run.run(["iptables", "-w", "-S"])
    except (CommandFailed, OSError):
        return None
    return tuple(line for line in out.splitlines() if OURS in line)


def apply_chain(chain: Chain, run: Runner) -> str:
    """Make the chain exactly ``chain.rules`` (one transaction), then add the jump if it is missing."""
    lines = observe(run)
    if lines is not None and in_force(chain, lines):
        return "already"
    if not run.succeeds(["iptables", "-w", "-n", "-L", chain.parent]):
        raise RuntimeError(
            f"the {chain.parent} chain does not exist"
            + (": is dockerd running (it makes DOCKER-USER)?" if chain.parent == "DOCKER-USER" else "")
        )
    # In iptables-restore --noflush, declaring a chain empties that chain only; the rest stays.
    script = "*filter\n" + f":{chain.name} - [0:0]\n" + "".join(rule + "\n" for rule in chain.rules) + "COMMIT\n"
    run.run(["iptables-restore", "-w", "--noflush"], stdin=script)
    jump = chain.jump.split()[1:]  # "-A PARENT ..." -> "PARENT ..."
    if not run.succeeds(["iptables", "-w", "-C", *jump]):
        run.run(["iptables", "-w", "-I", jump[0], "1", *jump[1:]])
    return "written"


def remove_chain(chain: Chain, run: Runner) -> None:
    """Undo apply_chain (uninstall, tests): the jump, then the chain."""
    jump = chain.jump.split()[1:]
    while run.succeeds(["iptables", "-w", "-C", *jump]):
        run.run(["iptables", "-w", "-D", *jump])
    run.run(["iptables", "-w", "-F", chain.name], ok_codes=(0, 1))
    run.run(["iptables", "-w", "-X", chain.name], ok_codes=(0, 1))


@driver(Kind.FIREWALL, Op.CREATE)
@driver(Kind.FIREWALL, Op.UPDATE)
def ensure(action: Action, ctx: Context) -> str:
    chains: Mapping[str, Chain] = ctx.firewall or {}
    if action.target not in chains:
        raise RuntimeError(f"no {action.target} firewall chain is configured")
    return apply_chain(chains[action.target], ctx.run)
