"""engine: one pass at a time, observe -> plan -> apply, under the pass lock.

``passes`` runs a pass (a preview or a converging pass) and returns an ``Outcome`` that the CLI, the daemon,
the status file and the teacher service all reuse; ``apply`` carries a plan
out through the host's drivers; ``journal`` records every action.  Imports
``config``, ``core``, ``host`` and ``credentials``; never an entry point.
"""
