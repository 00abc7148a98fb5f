"""The catalogues of words (reconciler/config/languages): every language has every key with the same
placeholders, and every key the page, the slips and the e-mails use exists."""

import json
import re
from pathlib import Path

import pytest

from reconciler.config import languages
from reconciler.config.site import Delivery

ROOT = Path(__file__).resolve().parents[2]
ENGLISH = json.loads((languages.HERE / "en.json").read_text())
PLACEHOLDER = re.compile(r"\{(\w+)\}")


@pytest.mark.parametrize("code", languages.available())
def test_every_language_has_every_key_with_the_same_placeholders(code):
    words = json.loads((languages.HERE / f"{code}.json").read_text())
    assert set(words) == set(ENGLISH), (
        f"{code}.json: missing {set(ENGLISH) - set(words)}, extra {set(words) - set(ENGLISH)}"
    )
    for key, text in ENGLISH.items():
        assert set(PLACEHOLDER.findall(words[key])) == set(PLACEHOLDER.findall(text)), (code, key)


def test_the_page_uses_only_keys_that_exist():
    script = (ROOT / "reconciler" / "service" / "static" / "assets" / "app.js").read_text()
    html = (ROOT / "reconciler" / "service" / "static" / "index.html").read_text()
    used = set(re.findall(r"\bt\('([\w.]+)'", script)) | set(re.findall(r't\["([\w.]+)"\]', html))
    used |= {f"page.col.{c}" for c in ("person", "account", "quota", "disk", "memory", "server", "credentials")}
    assert len(used) > 80 and used <= set(ENGLISH), sorted(used - set(ENGLISH))
    assert not re.search(r"t\('js\.\w+' \+", script)  # keys are literal: this test sees them all


def test_site_yaml_takes_any_language_that_has_a_catalogue():
    assert Delivery(language="it").language == "it"
    with pytest.raises(ValueError, match="not a language of this installation"):
        Delivery(language="xx")
