"""cli: the `reconcile` command (an entry point).

``main`` builds the top-level parser and dispatches (``set_defaults(func=...)``); every command module registers
its own subcommands with ``register(sub)`` (``parser`` holds the helpers): ``commands`` (the files, status, the
hub, passwords, the roster, storage, the image, and the one mapping from an engine outcome to an exit code),
``doctor``, ``prewarm``, ``archive`` (the end of term), ``watch`` (the daemon), ``up`` (the whole classroom on
one machine without an init system).
"""
