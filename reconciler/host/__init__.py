"""host: the imperative shell's hands and eyes.

``observe`` takes one batch snapshot of the host (``facts`` parses its files);
one thin driver module per real system (``accounts``, ``mounts``,
``volumes/`` with one module per backend, ``containers``, ``hubusers``)
registers its drivers in ``drivers``; every command and ownership change goes
through the ``run.Runner`` the pass hands them.  ``lock`` and ``fsutil`` are
the flock and crash-safe-write primitives.  Imports ``config`` and ``core``,
never ``engine`` or an entry point.
"""
