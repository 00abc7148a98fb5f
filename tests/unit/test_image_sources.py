"""The image builder fetches Debian from the mirror the host's apt already uses."""

import pytest

from reconciler.image import build as image


def test_deb822_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("RECONCILE_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# a comment: with a colon\nURIs: http://mirror.invalid/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "Types: deb deb-src\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\n"
    )
    assert image.host_mirror(tmp_path) == "http://mirror.invalid/debian"


def test_one_line_sources_win_and_options_are_skipped(tmp_path, monkeypatch):
    monkeypatch.delenv("RECONCILE_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# deb http://old.invalid/debian bookworm main\n"
        "deb [signed-by=/usr/share/keyrings/x.gpg] http://lines.invalid/debian bookworm main\n"
    )
    assert image.host_mirror(tmp_path) == "http://lines.invalid/debian"


def test_override_and_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("RECONCILE_DEBIAN_MIRROR", raising=False)
    with pytest.raises(image.ImageBuildError, match="RECONCILE_DEBIAN_MIRROR"):
        image.host_mirror(tmp_path)
    monkeypatch.setenv("RECONCILE_DEBIAN_MIRROR", "http://override.invalid/debian")
    assert image.host_mirror(tmp_path) == "http://override.invalid/debian"
