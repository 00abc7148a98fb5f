"""The test VM (tests/vmkit.py) boots Debian's kernel, and LVM works inside it.

This host's kernel has no device-mapper; the LVM tests run inside a QEMU VM instead. These
tests check that VM: one boot runs the whole LVM life cycle the reconciler relies on, and the
project's venv runs inside unchanged.
"""

import json
import os
import re
import sys
from pathlib import Path

import pytest
import vmkit

REPO = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def assets():
    reason = vmkit.vm_unavailable()
    if reason:
        pytest.skip(reason)
    return vmkit.ensure_assets()


LVM_SMOKE = r"""
set -eux
report() { echo "@@ $1 lv=$(lvs --noheadings --units b --nosuffix -o lv_size smoke/data | tr -d ' ')" \
  "fs=$(dumpe2fs -h /dev/smoke/data 2>/dev/null | awk -F: '/^Block count/ {gsub(/ /, "", $2); print $2}')"; }

# loop devices work in here too: a PV on a loop file, then gone again
truncate -s 64M /tmp/pv.img
loop=$(losetup --find --show /tmp/pv.img)
pvcreate --yes "$loop"
vgcreate looptest "$loop"
vgremove --yes looptest
pvremove --yes "$loop"
losetup -d "$loop"
echo "@@ loop ok"

pvcreate --yes /dev/vda
vgcreate smoke /dev/vda
lvcreate --yes --wipesignatures y --zero y -L 100M -n data smoke
mkfs.ext4 -q -F -b 4096 -m 0 -L smoke /dev/smoke/data
report created
mkdir -p /mnt/smoke
mount /dev/smoke/data /mnt/smoke
echo "hello from the VM" > /mnt/smoke/hello.txt
sha256sum /mnt/smoke/hello.txt > /tmp/hello.sha
lvextend --yes -r -L +100M /dev/smoke/data
report grown
df -B1 --output=size /mnt/smoke | tail -1 | sed 's/^ */@@ df-after-grow /'
umount /mnt/smoke
e2fsck -f -y /dev/smoke/data
lvreduce --yes -r -L 150M /dev/smoke/data
report shrunk
mount /dev/smoke/data /mnt/smoke
sha256sum -c /tmp/hello.sha
cat /mnt/smoke/hello.txt
umount /mnt/smoke
lvs --reportformat json --units b --nosuffix -o lv_name,vg_name,lv_size,lv_active smoke > /tmp/lvs.json
{ set +x; echo "@@ lvs-json-begin"; cat /tmp/lvs.json; echo "@@ lvs-json-end"; set -x; } 2>/dev/null
lvchange -an smoke/data
lvremove --yes smoke/data
vgremove --yes smoke
echo "@@ done"
"""


def test_lvm_life_cycle_in_one_boot(assets, tmp_path):
    disk = tmp_path / "pv.img"
    with open(disk, "wb") as handle:
        handle.truncate(512 * MiB)
    result = vmkit.run_in_vm(["sh", "-c", LVM_SMOKE], cwd=Path("/"), extra_disks=[disk], timeout=600, assets=assets)
    print(f"VM: {result.duration:.1f}s wall, booted in {result.boot_seconds}s")
    assert result.returncode == 0, result.output
    out = result.output
    assert "@@ loop ok" in out
    assert "@@ done" in out

    sizes = {m[1]: (int(m[2]), int(m[3])) for m in re.finditer(r"^@@ (\w+) lv=(\d+) fs=(\d+)$", out, re.MULTILINE)}
    # 4 KiB blocks; the shrink to 150M rounds up to 152M with 4 MiB extents
    assert sizes == {
        "created": (100 * MiB, 100 * MiB // 4096),
        "grown": (200 * MiB, 200 * MiB // 4096),
        "shrunk": (152 * MiB, 152 * MiB // 4096),
    }, out
    assert "hello from the VM" in out
    assert "/mnt/smoke/hello.txt: OK" in out

    report = json.loads(out.split("\n@@ lvs-json-begin\n", 1)[1].split("@@ lvs-json-end", 1)[0])
    (lv,) = report["report"][0]["lv"]
    assert lv["lv_name"] == "data" and lv["vg_name"] == "smoke"
    assert int(lv["lv_size"]) == 152 * MiB


def test_project_venv_runs_in_the_vm(assets):
    result = vmkit.run_in_vm(
        [sys.executable, "-c", "import reconciler, pydantic; print('ok')"], cwd=REPO, timeout=300, assets=assets
    )
    assert result.returncode == 0, result.output
    assert result.output.strip().splitlines()[-1] == "ok", result.output


def test_failures_report_exit_code_and_console(assets, tmp_path):
    # /tmp is a fresh tmpfs inside the VM: a host directory there is visible only as a share
    (tmp_path / "in.txt").write_text("from the host\n")
    script = "cat in.txt; echo back > out.txt; echo oops >&2; exit 7"
    result = vmkit.run_in_vm(["sh", "-c", script], cwd=tmp_path, shares=[tmp_path], timeout=300, assets=assets)
    assert result.returncode == 7, result.output
    assert "from the host" in result.output and "oops" in result.output
    assert "VM console" in result.output and "vminit:" in result.output
    assert (tmp_path / "out.txt").read_text() == "back\n"


def _my_qemu_descendants() -> list[int]:
    parents, cmdlines = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdlines[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
    me = os.getpid()

    def mine(pid: int) -> bool:
        seen = set()
        while pid in parents and pid not in seen:
            seen.add(pid)
            pid = parents[pid]
            if pid == me:
                return True
        return False

    return [pid for pid, cmd in cmdlines.items() if b"qemu-system" in cmd and mine(pid)]


def test_timeout_kills_the_vm(assets):
    result = vmkit.run_in_vm(["sleep", "600"], cwd=Path("/"), timeout=5, assets=assets)
    assert result.timed_out and result.returncode == 124, result.output
    assert _my_qemu_descendants() == []  # killed, not left running: the whole point of the timeout
