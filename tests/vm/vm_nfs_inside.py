"""Homes over NFS for the swarm's workers (hub.swarm.homes: nfs), run INSIDE the test VM by test_nfs_vm.py.

This host's kernel has neither the NFS server nor the client; Debian's kernel in the VM has both.  The manager is
the VM itself: reconcile's own passes (the engine, in-process) make the loop volumes and export them with
Debian's nfs-kernel-server (rpc.nfsd, rpc.mountd, exportfs; tests/vm/nfs_root.sh unpacks it).  The workers are
network namespaces of the VM, each joined to it by a veth pair: w1 (10.77.1.2) and w2 (10.77.2.2) are the
workers in site.yaml, "stranger" (10.77.3.2) is not.  A worker mounts a home the way Docker's `local` volume
driver does for a swarm service (hub/swarm.py's options, passed to mount(2) from the worker's network
namespace), and the person's server is played by a process with their UID.  No hub and no Docker run in here:
each pass reports them unreachable (blocked notes) and does everything else.

What is proven: the export is limited to the workers and needs the quota volume mounted; root on a worker is
squashed; another person's UID cannot read or write a home (with sec=sys the NFS mount itself is per machine:
any worker may run anyone's server); the quota's ENOSPC reaches the worker; the export the kernel shows is
what reconcile planned (a second pass is empty); an export withdrawn by hand is repaired; a disabled person's
export is withdrawn before their volume is unmounted; an offline shrink withdraws and exports again; a
worker holding files open on a volume makes its offline resize wait.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from reconciler.cli.doctor import OK, check_nfs
from reconciler.config.load import load_classroom, load_site
from reconciler.core.actions import Kind, Op
from reconciler.core.exports import parse_etab
from reconciler.engine import passes as engine
from reconciler.hub.swarm import NFS_OPTIONS, volume_options

ROOT = Path("/var/lib/classroom-nfs")  # state, images: the VM's memory
HOMES = Path("/srv/classroom/homes")  # on the exportable root (nfs_root.sh)
MANAGER = "10.77.1.1"
WORKERS = {"w1": 1, "w2": 2}
NAMESPACES = {**WORKERS, "stranger": 3}
ETAB = Path("/var/lib/nfs/etab")
MiB = 1024**2


def sh(*argv, check=True):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def nfs():
    """The kernel NFS server (NFSv4 only: no rpcbind) and the three namespaces."""
    sh("modprobe", "nfsd")
    sh("modprobe", "nfsv4")
    sh("modprobe", "veth")
    sh("mount", "-t", "nfsd", "nfsd", "/proc/fs/nfsd")
    sh("ip", "link", "set", "lo", "up")
    before = check_nfs(site())  # the doctor before nfsd has threads
    sh("rpc.mountd", "-N", "2", "-N", "3")
    sh("rpc.nfsd", "-N", "3", "-G", "10", "-L", "10", "4")  # 10 s grace: opens wait that long after the start
    for name, i in NAMESPACES.items():
        sh("ip", "netns", "add", name)
        sh("ip", "link", "add", f"h{name}", "type", "veth", "peer", "name", f"c{name}")
        sh("ip", "link", "set", f"c{name}", "netns", name)
        sh("ip", "addr", "add", f"10.77.{i}.1/24", "dev", f"h{name}")
        sh("ip", "link", "set", f"h{name}", "up")
        for cmd in (
            ["ip", "addr", "add", f"10.77.{i}.2/24", "dev", f"c{name}"],
            ["ip", "link", "set", "lo", "up"],
            ["ip", "link", "set", f"c{name}", "up"],
            ["ip", "route", "add", "default", "via", f"10.77.{i}.1"],
        ):
            sh("ip", "netns", "exec", name, *cmd)
    time.sleep(10)  # the grace period
    return before


def site():
    ROOT.mkdir(parents=True, exist_ok=True)
    path = ROOT / "site.yaml"
    if not path.exists():
        path.write_text(
            yaml.safe_dump(
                {
                    "state_dir": str(ROOT / "state"),
                    "homes_dir": str(HOMES),
                    "max_disable_fraction": 1.0,
                    "volumes": {"backend": "loop"},
                    "hub": {
                        "spawner": "swarm",
                        "shared_dir": "/srv/classroom/shared",
                        "token_file": str(ROOT / "no-token"),
                        "swarm": {
                            "address": MANAGER,
                            "homes": "nfs",
                            "exports_dir": "/etc/exports.d",
                            "workers": [{"address": f"10.77.{i}.2"} for i in WORKERS.values()],
                        },
                    },
                }
            )
        )
    return load_site(path)


def write(people):
    doc = {
        "version": 1,
        "name": "nfsc",
        "quotas": {"default": {"memory": "256Mi", "cpu": 1, "disk": "256Mi"}},
        "students": people,
    }
    (ROOT / "classroom.yaml").write_text(yaml.safe_dump(doc))


def reconcile(dry_run=False):
    """One pass of the engine, as the daemon runs it: the hub and Docker are absent, nothing else may fail."""
    settings = site()
    classroom = load_classroom(ROOT / "classroom.yaml", settings)
    step = engine.preview if dry_run else engine.converge
    outcome = step(settings, classroom, engine.policy(settings))
    assert {note.rule for note in outcome.plan.blocked} <= {"hub", "docker"}, outcome.plan.blocked
    assert not outcome.plan.refused
    if outcome.result is not None:
        assert set(outcome.result.failed) <= {"hub", "docker"}, outcome.result.failed
    return outcome


def exports_of(action_list):
    return [(a.op, a.target) for a in action_list if a.kind is Kind.EXPORT]


def table():
    return parse_etab(ETAB.read_text()) if ETAB.exists() else {}


def uid(user):
    return int(sh("id", "-u", user).stdout)


MOUNTER = r"""
import ctypes, errno, os, sys
# Docker's local driver hands its options to mount(2) as moby/sys/mount does: the flags it knows become MS_*
# flags, the rest the filesystem's data.
FLAGS = {"nosuid": 2, "nodev": 4, "noexec": 8, "ro": 1}
source, target, options = sys.argv[1:4]
flags = sum(FLAGS[o] for o in options.split(",") if o in FLAGS)
data = ",".join(o for o in options.split(",") if o not in FLAGS)
libc = ctypes.CDLL(None, use_errno=True)
if libc.mount(source.encode(), target.encode(), b"nfs", ctypes.c_ulong(flags), data.encode()) != 0:
    print(errno.errorcode[ctypes.get_errno()]); sys.exit(1)
print("OK")
"""


def worker_mount(namespace, home, target):
    """Mount a home in a worker's network namespace as the local driver does for a swarm service: 'OK' or
    the errno's name."""
    options = volume_options("nfs", MANAGER, str(home))
    assert options["type"] == "nfs" and options["o"] == f"addr={MANAGER},{NFS_OPTIONS}"
    Path(target).mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            "nsenter",
            f"--net=/run/netns/{namespace}",
            sys.executable,
            "-c",
            MOUNTER,
            options["device"],
            str(target),
            options["o"],
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout.strip() or done.stderr.strip()


def as_user(user_id, code, *args, namespace=None):
    """Run Python as this UID (a server on a worker): 'OK', or the errno's name it failed with."""
    wrapper = (
        "import errno, os, sys\ntry:\n"
        + "".join(f"    {line}\n" for line in code.strip().splitlines())
        + "    print('OK')\nexcept OSError as e:\n    print(errno.errorcode[e.errno])\n"
    )
    argv = [
        "setpriv",
        f"--reuid={user_id}",
        f"--regid={user_id}",
        "--clear-groups",
        sys.executable,
        "-c",
        wrapper,
        *map(str, args),
    ]
    if namespace:
        argv = ["nsenter", f"--net=/run/netns/{namespace}", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120).stdout.strip()


def unmount(target):
    sh("umount", target, check=False)


def test_a_pass_exports_each_mounted_home_to_the_workers_only(nfs):
    assert nfs[0].verdict != OK and "no nfsd threads" in nfs[0].detail  # the doctor, before rpc.nfsd ran
    write([{"username": "ann", "name": "Ann"}, {"username": "bob", "name": "Bob"}])
    outcome = reconcile()
    assert sorted(exports_of(outcome.result.done)) == [(Op.CREATE, "ann"), (Op.CREATE, "bob")]  # side by side
    workers = {f"10.77.{i}.2" for i in WORKERS.values()}
    found = table()
    for user in ("ann", "bob"):
        clients = found[str(HOMES / user)]
        assert set(clients) == workers
        for options in clients.values():
            assert {"rw", "sync", "root_squash", "sec=sys", "mountpoint"} <= options
    file = Path("/etc/exports.d/classroom-nfsc.exports").read_text()
    assert f"{HOMES / 'ann'} 10.77.1.2(rw,sync,root_squash,sec=sys,no_subtree_check,mountpoint)" in file
    # what the kernel shows is what was planned: nothing left to do
    assert exports_of(reconcile(dry_run=True).plan.actions) == []
    (check,) = check_nfs(site())
    assert check.verdict == OK and "4 threads" in check.detail, check


def test_a_worker_mounts_a_home_as_docker_does_and_only_its_owner_gets_in(nfs):
    ann, bob = uid("ann"), uid("bob")
    target = Path("/mnt/w1-ann")
    assert worker_mount("w1", HOMES / "ann", target) == "OK"
    try:
        mount_line = next(line for line in Path("/proc/mounts").read_text().splitlines() if f" {target} " in line)
        assert " nfs4 " in mount_line and "nosuid" in mount_line and "nodev" in mount_line and "vers=4.2" in mount_line
        assert as_user(ann, "open(sys.argv[1], 'w').write('from the worker')", target / "note.txt") == "OK"
        written = HOMES / "ann" / "note.txt"
        assert written.read_text() == "from the worker" and written.stat().st_uid == ann  # on the quota volume
        # root on the worker is nobody here (root_squash): the 0700 home keeps it out
        assert as_user(0, "os.listdir(sys.argv[1])", target) == "EACCES"
        assert as_user(0, "open(sys.argv[1], 'w')", target / "root.txt") == "EACCES"
        # another person's server on the same worker: no way in either
        assert as_user(bob, "os.listdir(sys.argv[1])", target) == "EACCES"
        assert as_user(bob, "open(sys.argv[1])", target / "note.txt") == "EACCES"
    finally:
        unmount(target)


def test_a_machine_that_is_not_a_worker_is_refused(nfs):
    assert worker_mount("stranger", HOMES / "ann", "/mnt/stranger") == "EACCES"
    # a worker sees no more of this server than the way down to the exports (NFSv4's pseudo-root): not the
    # files beside them
    (HOMES.parent / "not-exported.txt").write_text("manager only")
    assert worker_mount("w2", "/srv", "/mnt/w2-srv") == "OK"
    try:
        assert os.listdir("/mnt/w2-srv/classroom") == ["homes"]
        assert sorted(os.listdir("/mnt/w2-srv/classroom/homes")) == ["ann", "bob"]
    finally:
        unmount("/mnt/w2-srv")


def test_the_quota_reaches_the_worker_as_enospc(nfs):
    target = Path("/mnt/w2-ann")
    assert worker_mount("w2", HOMES / "ann", target) == "OK"
    try:
        fill = """
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)
try:
    for _ in range(300):
        os.write(fd, b"x" * (1 << 20))
    os.fsync(fd)
finally:
    os.close(fd)
"""
        assert as_user(uid("ann"), fill, target / "big") == "ENOSPC"  # 300 MiB > 256 MiB
        assert as_user(uid("ann"), "os.unlink(sys.argv[1])", target / "big") == "OK"
    finally:
        unmount(target)


def test_an_export_withdrawn_by_hand_is_repaired(nfs):
    sh("exportfs", "-u", f"10.77.1.2:{HOMES / 'ann'}")
    assert set(table()[str(HOMES / "ann")]) == {"10.77.2.2"}
    outcome = reconcile()
    (repair,) = [a for a in outcome.result.done if a.kind is Kind.EXPORT]
    assert (repair.op, repair.target, repair.drift) == (Op.UPDATE, "ann", True)
    assert set(table()[str(HOMES / "ann")]) == {"10.77.1.2", "10.77.2.2"}


def test_a_disabled_student_is_withdrawn_then_unmounted(nfs):
    write([{"username": "ann", "name": "Ann"}, {"username": "bob", "name": "Bob", "status": "disabled"}])
    outcome = reconcile()
    steps = [(a.op, a.kind) for a in outcome.result.done if a.target == "bob"]
    assert steps.index((Op.DISABLE, Kind.EXPORT)) < steps.index((Op.DISABLE, Kind.MOUNT))
    assert str(HOMES / "bob") not in table()
    assert str(HOMES / "bob") not in Path("/etc/exports.d/classroom-nfsc.exports").read_text()
    assert not os.path.ismount(HOMES / "bob")
    assert worker_mount("w2", HOMES / "bob", "/mnt/w2-bob") == "ENOENT"
    assert exports_of(reconcile(dry_run=True).plan.actions) == []


def test_a_worker_holding_files_open_makes_an_offline_shrink_wait(nfs):
    target = Path("/mnt/w1-ann-open")
    assert worker_mount("w1", HOMES / "ann", target) == "OK"
    holder = subprocess.Popen(
        [
            "nsenter",
            "--net=/run/netns/w1",
            "setpriv",
            f"--reuid={uid('ann')}",
            f"--regid={uid('ann')}",
            "--clear-groups",
            sys.executable,
            "-c",
            "import sys, time\nf = open(sys.argv[1], 'a')\nprint('open', flush=True)\ntime.sleep(600)",
            str(target / "note.txt"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        write(
            [
                {"username": "ann", "name": "Ann", "disk": "128Mi"},
                {"username": "bob", "name": "Bob", "status": "disabled"},
            ]
        )
        outcome = reconcile()
        (shrink,) = [a for a in outcome.plan.actions if a.kind is Kind.VOLUME]
        assert "mounted in another mount namespace" in shrink.waits, shrink  # the worker's open file holds it
        assert exports_of(outcome.plan.actions) == []  # so the export stays: the worker keeps working
        assert set(table()[str(HOMES / "ann")]) == {"10.77.1.2", "10.77.2.2"}
    finally:
        holder.kill()
        holder.wait()
        unmount(target)


def test_an_offline_shrink_withdraws_the_export_and_makes_it_again(nfs):
    """After a worker used a home, the kernel keeps it in its export caches for up to two lease times (10 s here,
    90 s by default): until then the unmount for the shrink is busy, and the pass says why and retries (the
    daemon's next pass); the export is made again meanwhile, so nothing is left half done."""
    waited = []
    deadline = time.monotonic() + 240
    while True:
        outcome = reconcile()
        ann = [(a.op, a.kind) for a in outcome.result.done if a.target == "ann"]
        if (Op.UPDATE, Kind.VOLUME) in ann or time.monotonic() > deadline:
            break
        waited.append(outcome.result.waiting.get("ann") or [a.waits for a in outcome.plan.actions if a.waits])
        time.sleep(5)
    assert ann == [(Op.DISABLE, Kind.EXPORT), (Op.UPDATE, Kind.VOLUME), (Op.CREATE, Kind.EXPORT)], (ann, waited)
    for why in waited:  # the worker's open file (until its CLOSE), then the kernel's caches
        assert "mounted in another mount namespace" in str(why) or "the NFS server keeps it" in str(why), why
    assert set(table()[str(HOMES / "ann")]) == {"10.77.1.2", "10.77.2.2"}
    assert (HOMES / "ann" / "note.txt").read_text() == "from the worker"
    assert exports_of(reconcile(dry_run=True).plan.actions) == []
    target = Path("/mnt/w1-ann-again")
    assert worker_mount("w1", HOMES / "ann", target) == "OK"
    try:
        assert as_user(uid("ann"), "open(sys.argv[1]).read()", target / "note.txt") == "OK"
    finally:
        unmount(target)
