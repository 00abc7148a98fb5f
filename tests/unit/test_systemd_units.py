"""The shipped systemd units pass `systemd-analyze verify` (systemd is not PID 1 here, so they are not started)."""

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.host import liveness

UNITS = Path(__file__).resolve().parents[2] / "examples" / "systemd"
INSTALLED_VENV = "/opt/classroom/venv"
pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")


def render(tmp_path: Path, name: str, text: str | None = None) -> Path:
    """As install.sh installs them, but pointing at this checkout's venv so ExecStart exists."""
    venv = str(Path(sys.executable).parent.parent)
    target = tmp_path / name
    target.write_text((text if text is not None else (UNITS / name).read_text()).replace(INSTALLED_VENV, venv))
    return target


def verify(*units: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True)


def test_units_verify(tmp_path):
    units = [render(tmp_path, p.name) for p in sorted(UNITS.glob("*.service"))]
    assert len(units) == 3
    out = verify(*units)
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr


def test_a_broken_unit_is_caught(tmp_path):
    broken = (UNITS / "classroom-hub.service").read_text().replace("ExecStart=", "ExecStrat=")
    out = verify(render(tmp_path, "classroom-broken.service", broken))
    assert out.returncode != 0 or "Unknown key" in out.stderr


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNITS / name)
    return parser


def test_boot_order_mounts_before_hub_and_daemon():
    mount, hub, daemon = (unit(f"classroom-{n}.service") for n in ("mount", "hub", "reconcile"))
    assert "reconcile mount-all" in mount["Service"]["ExecStart"]
    assert "classroom-hub.service" in mount["Unit"]["Before"]
    for other in (hub, daemon):
        assert "classroom-mount.service" in other["Unit"]["Requires"]
        assert "classroom-mount.service" in other["Unit"]["After"]
        assert "/var/lib/classroom" in other["Unit"]["RequiresMountsFor"]
    assert "docker.service" in hub["Unit"]["Requires"]
    assert daemon["Service"]["ExecReload"] == "/bin/kill -HUP $MAINPID"


def test_the_daemon_tells_systemd_it_is_alive():
    """Type=notify with a watchdog: the daemon's heartbeat thread sends READY=1 and WATCHDOG=1 (host/liveness.py),
    so a daemon that hangs is restarted, not left looking like it runs."""
    daemon = unit("classroom-reconcile.service")["Service"]
    assert daemon["Type"] == "notify" and daemon["NotifyAccess"] == "main"
    assert int(daemon["WatchdogSec"]) >= 3 * liveness.BEAT  # three heartbeats may be missed before a restart
    assert daemon["Restart"] == "always"


# The Littlest JupyterHub's jupyterhub.service sets these; each one gives the unit a mount namespace of its own
# (systemd.exec(5)), from which no mount reaches the host or Docker's containers.
TLJH_SANDBOXING = ("PrivateTmp", "PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules", "ProtectHome")
MOUNT_NAMESPACE = (
    *TLJH_SANDBOXING,
    "PrivateMounts",
    "ProtectSystem",
    "ProtectControlGroups",
    "ProtectKernelLogs",
    "ReadOnlyPaths",
    "InaccessiblePaths",
    "TemporaryFileSystem",
    "BindPaths",
    "BindReadOnlyPaths",
    "RootDirectory",
    "MountFlags",
)


@pytest.mark.parametrize("name", ["classroom-mount.service", "classroom-reconcile.service", "classroom-hub.service"])
def test_units_that_mount_keep_the_host_mount_namespace(name):
    """Every unit mounts (the boot unit and the daemon the homes; the hub's classroom service an export's view, which
    the daemon's pass must see to clear): TLJH's sandboxing is written out as off, each with its reason next to it,
    and nothing else gives the unit a mount namespace of its own."""
    service = unit(name)["Service"]
    text = (UNITS / name).read_text()
    for key in TLJH_SANDBOXING:
        assert service.get(key) == "no", (name, key)
        assert f"# - {key}: " in text, f"{name}: say why {key} is off"
    for key in MOUNT_NAMESPACE:
        assert service.get(key, "no") == "no", (name, key)
    assert service.get("DynamicUser", "no") == "no"  # it implies PrivateTmp and ProtectSystem=strict
