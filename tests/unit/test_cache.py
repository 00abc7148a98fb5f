"""Validated configuration remembered by content (config.cache): a hit skips parsing and validation, anything
that could change the result is a miss, and an entry that is not this user's own, torn or not a configuration
is never loaded."""

import os
import pickle
from pathlib import Path

import pytest

from reconciler.config import load as loading
from reconciler.config import cache as cache_module  # `cache` is each test's cache directory
from reconciler.config.classroom import Classroom
from reconciler.config.load import InvalidFile, load_classroom, load_site
from reconciler.config.site import Paths, Site, find_site

ROSTER = """\
version: 1
name: remember
quotas:
  default: {memory: 512Mi, cpu: 1, disk: 1Gi}
students:
  - {username: ada, name: Ada Lovelace}
  - {username: alan, name: Alan Turing, memory: 1Gi}
"""


@pytest.fixture
def files(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv(cache_module.ENV, str(cache))
    site_file = tmp_path / "site.yaml"
    site_file.write_text(f"state_dir: {tmp_path / 'state'}\nlimits: {{memory: 2Gi}}\n")
    roster = tmp_path / "classroom.yaml"
    roster.write_text(ROSTER)
    return site_file, roster, cache


def no_validation(monkeypatch):
    """From here on, validating classroom.yaml or site.yaml fails the test: only a hit can answer."""

    def fail(*args, **kwargs):
        raise AssertionError("validated again")

    monkeypatch.setattr(loading, "check_classroom", fail)
    monkeypatch.setattr(loading, "_load_site", fail)


def test_a_hit_gives_the_same_configuration_without_validating(files, monkeypatch):
    site_file, roster, cache = files
    site = load_site(site_file, remember=True)
    classroom = load_classroom(roster, site, remember=True)
    assert sorted(p.stat().st_mode & 0o777 for p in cache.iterdir()) == [0o600, 0o600]
    assert cache.stat().st_mode & 0o777 == 0o700
    no_validation(monkeypatch)
    again_site = load_site(site_file, remember=True)
    again = load_classroom(roster, again_site, remember=True)
    assert again_site == site and again == classroom
    assert again.students[1].memory == 1024**3 and again_site.limits.memory == 2 * 1024**3


def test_changed_bytes_code_or_site_are_misses(files, monkeypatch):
    site_file, roster, _ = files
    site = load_site(site_file, remember=True)
    load_classroom(roster, site, remember=True)
    # the file's bytes: a one-character edit is validated (and the new value is what comes back)
    roster.write_text(ROSTER.replace("Ada Lovelace", "Ada King"))
    assert load_classroom(roster, site, remember=True).students[0].name == "Ada King"
    # the site it is checked against: a lower limit makes the same roster invalid
    site_file.write_text(site_file.read_text().replace("2Gi", "768Mi"))
    lower = load_site(site_file, remember=True)
    with pytest.raises(InvalidFile, match="above this server's limit"):
        load_classroom(roster, lower, remember=True)
    # a copy of a site (other limits, same object id never) has no key: validated, not looked up
    with pytest.raises(InvalidFile, match="above this server's limit"):
        load_classroom(roster, site.model_copy(update={"limits": lower.limits}), remember=True)
    # the validating code: another fingerprint is another key
    site_file.write_text(site_file.read_text().replace("768Mi", "2Gi"))
    site = load_site(site_file, remember=True)
    load_classroom(roster, site, remember=True)
    monkeypatch.setattr(cache_module, "_fingerprint_parts", ("another version of the code",))
    calls = []
    real = loading.check_classroom
    monkeypatch.setattr(loading, "check_classroom", lambda *a: calls.append(1) or real(*a))
    load_classroom(roster, load_site(site_file, remember=True), remember=True)
    assert calls == [1]


def test_invalid_files_are_not_remembered(files):
    site_file, roster, cache = files
    roster.write_text(ROSTER.replace("ada,", "Ada,"))
    site = load_site(site_file, remember=True)
    for _ in range(2):  # reported every time, from the file
        with pytest.raises(InvalidFile, match=r"classroom.yaml:6:.*not a valid username"):
            load_classroom(roster, site, remember=True)
    assert len(list(cache.iterdir())) == 1  # the site only


def only_entry(cache, kind_of):
    (entry,) = [p for p in cache.iterdir() if kind_of(p)]
    return entry


def test_entries_others_could_write_are_not_read(files, monkeypatch, capsys):
    site_file, roster, cache = files
    site = load_site(site_file, remember=True)
    load_classroom(roster, site, remember=True)
    site_entry = only_entry(cache, lambda p: cache_module._file_name(f"site:{site_file}") == p.name)
    site_entry.chmod(0o620)
    calls = []
    real = loading._load_site
    monkeypatch.setattr(loading, "_load_site", lambda *a: calls.append(1) or real(*a))
    load_site(site_file, remember=True)
    assert calls == [1] and "not using the configuration cache" in capsys.readouterr().err
    site_entry.chmod(0o600)
    load_site(site_file, remember=True)  # a private entry again (rewritten by the load above): read, not loaded
    assert calls == [1]
    cache.chmod(0o777)  # the directory itself
    load_site(site_file, remember=True)
    assert calls == [1, 1] and cache.stat().st_mode & 0o777 == 0o777


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root (CI runs as root and refuses skips)")
def test_an_entry_another_user_owns_is_not_read(files, monkeypatch):
    site_file, roster, cache = files
    site = load_site(site_file, remember=True)
    load_classroom(roster, site, remember=True)
    site_entry = only_entry(cache, lambda p: cache_module._file_name(f"site:{site_file}") == p.name)
    os.chown(site_entry, 65534, 65534)  # owned by another user, even if only it could write
    calls = []
    real = loading._load_site
    monkeypatch.setattr(loading, "_load_site", lambda *a: calls.append(1) or real(*a))
    load_site(site_file, remember=True)
    assert calls == [1]


def forged(cache, slot, wanted, payload):
    """An entry with a valid header and checksum around any payload."""
    import hashlib

    (cache / cache_module._file_name(slot)).write_bytes(
        cache_module._MAGIC + wanted + hashlib.sha256(payload).digest() + payload
    )
    (cache / cache_module._file_name(slot)).chmod(0o600)


class Boom:
    def __reduce__(self):
        return (os.system, ("touch /tmp/remember-test-pwned",))


def test_only_configuration_objects_are_unpickled(files):
    site_file, roster, cache = files
    site = load_site(site_file, remember=True)
    slot = f"site:{site_file}"
    wanted = cache_module.key(slot, site_file.read_bytes())
    assert cache_module.fetch(slot, wanted) == site
    forged(cache, slot, wanted, pickle.dumps(Boom()))
    assert cache_module.fetch(slot, wanted) is None and not os.path.exists("/tmp/remember-test-pwned")
    for other in (find_site, Paths(Path("/x"), Path("/y"))):  # a function, a class of the config: not models
        forged(cache, slot, wanted, pickle.dumps(other))
        assert cache_module.fetch(slot, wanted) is None
    # a torn write: the payload no longer matches its checksum
    data = (cache / cache_module._file_name(slot)).read_bytes()
    (cache / cache_module._file_name(slot)).write_bytes(data[:-5])
    assert cache_module.fetch(slot, wanted) is None
    assert isinstance(load_site(site_file, remember=True), Site)  # and the command goes on, validating


def test_off_and_pruning(files, monkeypatch, tmp_path):
    site_file, roster, cache = files
    monkeypatch.setenv(cache_module.ENV, "off")
    load_classroom(roster, load_site(site_file, remember=True), remember=True)
    assert not cache.exists()
    monkeypatch.setenv(cache_module.ENV, str(cache))
    monkeypatch.setattr(cache_module, "KEEP", 3)
    site = load_site(site_file, remember=True)
    for index in range(5):
        other = tmp_path / f"class{index}.yaml"
        other.write_text(ROSTER)
        assert isinstance(load_classroom(other, site, remember=True), Classroom)
    assert len(list(cache.glob("*.pickle"))) == 3 and not list(cache.glob(".entry-*"))
