"""`reconcile up`'s logs rotate by size in the one process that writes them (host/logpipe.py): every line is
kept, in order, across the files, none is split, and only KEEP old files stay."""

import subprocess
import sys

from reconciler.host.logpipe import pump


def test_lines_rotate_whole_and_in_order(tmp_path):
    log = tmp_path / "hub.log"
    lines = [f"line {i:04d} {'x' * (i % 37)}\n".encode() for i in range(400)]
    with open(tmp_path / "in", "wb") as feed:
        feed.writelines(lines)
    with open(tmp_path / "in", "rb") as source:
        pump(source, log, max_bytes=2000, keep=100)
    files = sorted(tmp_path.glob("hub.log.*"), key=lambda p: -int(p.suffix[1:])) + [log]
    assert len(files) > 5 and all(f.stat().st_size <= 2000 for f in files)
    assert b"".join(f.read_bytes() for f in files) == b"".join(lines)  # nothing lost, nothing split
    assert {f.stat().st_mode & 0o777 for f in files} == {0o600}  # root's alone, like every state file


def test_a_log_an_older_version_left_readable_is_narrowed(tmp_path):
    log = tmp_path / "watch.log"
    log.write_text("before\n")
    log.chmod(0o644)
    with open(tmp_path / "in", "wb") as feed:
        feed.write(b"after\n")
    with open(tmp_path / "in", "rb") as source:
        pump(source, log)
    assert log.read_text() == "before\nafter\n" and log.stat().st_mode & 0o777 == 0o600


def test_only_keep_old_files_stay_and_the_writer_ends_with_its_input(tmp_path):
    log = tmp_path / "daemon.log"
    writer = subprocess.run(
        [sys.executable, "-c", "import sys\nfor i in range(3000): print(f'entry {i}')"], capture_output=True, check=True
    ).stdout
    done = subprocess.run(
        [sys.executable, "-m", "reconciler.host.logpipe", str(log), "1000", "3"], input=writer, timeout=60
    )
    assert done.returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["daemon.log", "daemon.log.1", "daemon.log.2", "daemon.log.3"]
    assert log.read_text().splitlines()[-1] == "entry 2999"  # the newest in the current file


def test_a_write_that_fails_drops_the_line_and_the_writer_goes_on(tmp_path):
    log = tmp_path / "gone" / "hub.log"  # cannot be opened: as a full or read-only disk would refuse
    pump(iter([b"lost\n", b"also lost\n"]), log)  # no exception: the process behind the pipe keeps running
    log.parent.mkdir()
    pump(iter([b"kept\n"]), log)
    assert log.read_text() == "kept\n"
