"""Homes over NFS for the swarm's workers: tests/vm/vm_nfs_inside.py, run by pytest inside one VM boot.

This host's kernel has no NFS server or client (nor may the host get Debian's NFS packages installed: their
maintainer scripts would start services this kernel cannot run).  The VM boots Debian's own kernel; the
nfs-kernel-server package (and libwrap0, its one library this host lacks) are downloaded here with `apt-get
download`, cached, and unpacked inside the VM's throw-away root by tests/vm/nfs_root.sh.  The junit report
comes back through a shared directory, so a run that silently tested nothing cannot pass.
"""

import subprocess
import tempfile
from pathlib import Path

import pytest
import vmkit

REPO = Path(__file__).resolve().parents[2]
DEBS = Path("/var/cache/classroom-test-nfs")
PACKAGES = ("nfs-kernel-server", "libwrap0")
EXPECTED = 8  # tests in vm_nfs_inside.py


def nfs_debs() -> Path:
    """Debian's NFS server packages, downloaded once (never installed on this host)."""
    DEBS.mkdir(parents=True, exist_ok=True)
    DEBS.chmod(0o755)
    for package in PACKAGES:
        if not list(DEBS.glob(f"{package}_*.deb")):
            with tempfile.TemporaryDirectory(dir=DEBS) as download:
                Path(download).chmod(0o777)  # apt's sandbox user writes there
                subprocess.run(["apt-get", "download", "-qq", package], cwd=download, check=True, capture_output=True)
                for deb in Path(download).glob("*.deb"):
                    deb.rename(DEBS / deb.name)
    return DEBS


def test_homes_over_nfs_inside_a_vm():
    reason = vmkit.vm_unavailable()
    if reason:
        pytest.skip(reason)
    vmkit.pytest_in_vm(
        REPO,
        "tests/vm/vm_nfs_inside.py",
        EXPECTED,
        assets=vmkit.ensure_assets(),
        before=["/bin/bash", str(REPO / "tests/vm/nfs_root.sh"), str(nfs_debs())],
    )
