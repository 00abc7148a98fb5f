"""The LVM volume backend on real LVM: tests/vm/vm_lvm_inside.py, run by pytest inside one VM boot.

This host's kernel has no device-mapper, so the suite runs in a QEMU VM booting Debian's kernel
(tests/vmkit.py) with this checkout and its venv visible at the same paths.  The junit report
comes back through a shared directory, so a run that silently tested nothing cannot pass.
"""

from pathlib import Path

import pytest
import vmkit

REPO = Path(__file__).resolve().parents[2]
EXPECTED = 10  # tests in vm_lvm_inside.py


def test_lvm_backend_inside_a_vm():
    reason = vmkit.vm_unavailable()
    if reason:
        pytest.skip(reason)
    vmkit.pytest_in_vm(REPO, "tests/vm/vm_lvm_inside.py", EXPECTED, assets=vmkit.ensure_assets())
