"""cli: the `reconcile` command (an entry point).

``main`` parses the arguments and dispatches (``set_defaults(func=...)``),
``commands`` holds the commands and the one mapping from an engine outcome to
an exit code, ``watch`` is the daemon, ``up`` runs the whole classroom on one
machine without an init system.
"""
