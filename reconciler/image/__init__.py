"""image: the student container image, built on this host without a registry (``build``).

The exact Python packages are data (``pins.txt``).  Imports ``config`` and ``host``.
"""
