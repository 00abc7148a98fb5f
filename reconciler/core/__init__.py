"""core: the pure functional core.  No subprocess, no file I/O, no clock.

``desired`` resolves classroom.yaml into what the host should have, ``actual``
holds the snapshot types the host layer observes, ``actions`` the typed,
frozen actions, ``plan`` diffs the two into a Plan, ``render`` and ``report``
turn plans and snapshots into text and JSON.  Imports only ``config``.
"""
