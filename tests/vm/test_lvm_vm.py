"""The LVM volume backend on real LVM: tests/vm/vm_lvm_inside.py, run by pytest inside one VM boot.

This host's kernel has no device-mapper, so the suite runs in a QEMU VM booting Debian's kernel
(tests/vmkit.py) with this checkout and its venv visible at the same paths.  The junit report
comes back through a shared directory, so a run that silently tested nothing cannot pass.
"""

import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import vmkit

REPO = Path(__file__).resolve().parents[2]
EXPECTED = 9  # tests in vm_lvm_inside.py



def test_lvm_backend_inside_a_vm():
    reason = vmkit.vm_unavailable()
    if reason:
        pytest.skip(reason)
    assets = vmkit.ensure_assets()
    with tempfile.TemporaryDirectory(prefix="lvm-vm-results-") as results:
        junit = Path(results) / "junit.xml"
        result = vmkit.run_in_vm(
            [sys.executable, "-m", "pytest", "tests/vm/vm_lvm_inside.py", "-q", "-p", "no:cacheprovider",
             "-o", "addopts=", f"--junitxml={junit}"],
            cwd=REPO, timeout=1200, shares=[Path(results)], memory_mb=1536, assets=assets)
        print(result.output[-6000:])
        assert result.returncode == 0, result.output[-6000:]
        suite = ET.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        assert int(suite.get("tests")) == EXPECTED
        assert int(suite.get("failures")) == int(suite.get("errors")) == int(suite.get("skipped")) == 0
