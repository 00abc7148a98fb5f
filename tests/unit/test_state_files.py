"""Writes under the state directory: atomic, race-safe, private; the SMTP secrets file must be private."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from reconciler.credentials.delivery import UnsafeSecrets, read_secrets
from reconciler.host.fsutil import private_dir, write_atomic


def test_a_planted_symlink_never_receives_the_data(tmp_path: Path):
    """The old temp name was predictable (.<name>.<pid>.tmp): a symlink there sent a slip's passwords elsewhere."""
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    out = tmp_path / "slips.html"
    (tmp_path / f".slips.html.{os.getpid()}.tmp").symlink_to(victim)
    write_atomic(out, "passwords")
    assert victim.read_text() == "untouched"
    assert out.read_text() == "passwords" and not out.is_symlink()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # root's alone unless asked otherwise


def test_the_state_directory_is_private(tmp_path: Path):
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    private_dir(state)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def test_smtp_secrets_readable_by_others_are_refused(tmp_path: Path):
    secrets = tmp_path / "smtp.yaml"
    secrets.write_text("username: mailer\npassword: s3cret\n")
    secrets.chmod(0o640)
    with pytest.raises(UnsafeSecrets, match="readable by others .*0640.*chmod 600"):
        read_secrets(secrets)
    secrets.chmod(0o600)
    assert read_secrets(secrets) == ("mailer", "s3cret")


def test_disk_space_is_one_entry_per_filesystem_and_warns_below_the_share(tmp_path: Path):
    from reconciler.host.facts import disk_space

    (tmp_path / "state").mkdir()
    found = disk_space(
        [("the volume images", tmp_path / "state" / "volumes"), ("the state", tmp_path / "state")], warn_below=1.0
    )
    assert len(found) == 1  # the same filesystem: one entry naming both
    assert found[0].what == "the volume images, the state" and found[0].low is True
    assert 0 < found[0].free <= found[0].size
    assert disk_space([("x", tmp_path)], warn_below=0.0)[0].low is False
    assert type(found[0]).from_json(found[0].to_json()) == found[0]


def test_the_journal_rotates_by_size_and_never_loses_an_entry(tmp_path):
    from reconciler.core.actions import Action, Kind, Op
    from reconciler.engine import journal

    path = tmp_path / "journal.jsonl"
    written = 0
    for pass_number in range(6):  # each pass opens the journal once, as a real pass does
        entry = journal.Journal(path, f"pass-{pass_number}", max_size=300)
        for _ in range(2):
            entry.record(Action(Op.CREATE, Kind.GROUP, f"g{written}"), "ok")
            written += 1
        entry.close()
    kept = journal.history(path)
    assert len(kept) > 2 and kept[-1] == path  # rotated files first, the current one last
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in kept)
    assert [e["target"] for e in journal.read(path)] == [f"g{i}" for i in range(written)]  # all, in order

    # a writer that opened the journal before someone else rotated it keeps writing into the kept file
    early = journal.Journal(path, "early", max_size=10**9)
    rotated = journal.rotate(path, max_size=0)
    early.record(Action(Op.CREATE, Kind.GROUP, "late"), "ok")
    early.close()
    assert rotated is not None and "late" in rotated.read_text()
    assert journal.read(path)[-1]["target"] == "late"


def test_the_doctor_reads_the_disks_it_is_given(tmp_path: Path):
    """`reconcile doctor`'s disk check over engine.disks: a warning per low filesystem, said in MiB."""
    from reconciler.cli.doctor import OK, WARN, check_disks
    from reconciler.config.site import Site

    low = check_disks(Site.model_validate({"state_dir": str(tmp_path / "state"), "warn_free_fraction": 1.0}))
    assert low and {check.verdict for check in low} == {WARN}
    assert "MiB free of" in low[0].detail and "the state" in low[0].detail
    (fine,) = check_disks(Site.model_validate({"state_dir": str(tmp_path / "state"), "warn_free_fraction": 0.0}))
    assert fine.verdict == OK
