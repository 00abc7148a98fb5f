"""Sphinx configuration: Markdown pages (myst-parser), the built-in alabaster theme, no network.

Build: ``.venv/bin/sphinx-build -W --keep-going -n -b html docs docs/_build`` (warnings are errors; CI's
``tests/unit/test_docs.py`` builds it the same way).  The reference pages for classroom.yaml, site.yaml, the CLI
and the REST API are generated from the code at the start of every build (``_ext/refgen.py``).
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE / "_ext"), str(HERE.parent)]  # the extension, and the reconciler package it reads

project = "classroom reconciler"
author = "the classroom reconciler project"
copyright = "the classroom reconciler project"

extensions = ["myst_parser", "refgen"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "reference/generated", "_ext"]

# Cross-page links are Markdown links to the other page's file; broken ones warn (and -W makes that an error).
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

html_theme = "alabaster"
html_title = "classroom reconciler"
html_theme_options = {"nosidebar": False, "description": "A declarative Jupyter classroom on one Linux server"}
html_static_path: list[str] = []
