"""One reconcile pass — observe, plan, then preview or apply — under the pass lock.

Shared by the `reconcile` command and the watch daemon; it prints nothing, so
each caller reports the outcome its own way.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

from . import lock, observe, spec
from .apply import Result, apply
from .hub.config import hub_api_url
from .journal import Journal
from .plan import Action, Plan, Policy, plan

EXIT_OK, EXIT_ERROR, EXIT_PENDING, EXIT_REFUSED = 0, 1, 2, 3


@dataclass(frozen=True)
class Outcome:
    plan: Plan
    result: Result | None  # None when nothing was applied (dry run, refused, no changes)
    code: int


def policy(site: spec.Site, allow_destroy: bool = False, allow_mass_disable: bool = False) -> Policy:
    """The operator's flags plus the site's limits."""
    overcommit = site.volumes.max_overcommit if isinstance(site.volumes, spec.LvmVolumes) else 1.0
    return Policy(allow_destroy, allow_mass_disable, site.max_disable_fraction, overcommit)


def hub_probes(site: spec.Site, classroom: str):
    """(hub client, hub probe, container probe) when site.yaml has a hub section, else Nones."""
    if site.hub is None:
        return None, None, None
    from . import containers, hubapi  # requests and docker load only where a hub is configured

    try:
        client = hubapi.HubClient(hub_api_url(site.hub), site.hub.token_file, site.hub.request_timeout)
        error = None
    except hubapi.HubUnavailable as exc:
        client, error = None, str(exc)
    return client, (lambda: hubapi.snapshot(client, error)), (lambda: containers.list_containers(classroom))


def one_pass(site: spec.Site, classroom: spec.Classroom, policy: Policy, *, dry_run: bool,
             on_plan: Callable[[Plan], None] = lambda p: None,
             report: Callable[[Action, str, str], None] = lambda a, r, d: None,
             should_stop: Callable[[], bool] = lambda: False) -> Outcome:
    paths = site.paths
    desired = spec.resolve(classroom, paths)
    client, hub_probe, container_probe = hub_probes(site, classroom.name)
    with lock.hold(paths.lock, exclusive=not dry_run, timeout=site.lock_timeout):
        the_plan = plan(desired, observe.observe(paths, hub=hub_probe, containers=container_probe), policy)
        on_plan(the_plan)
        if the_plan.refused:
            return Outcome(the_plan, None, EXIT_REFUSED)
        if dry_run:
            code = EXIT_ERROR if the_plan.blocked else (EXIT_PENDING if the_plan.actions else EXIT_OK)
            return Outcome(the_plan, None, code)
        if not the_plan.actions and not the_plan.blocked:
            return Outcome(the_plan, None, EXIT_OK)
        journal = Journal(paths.journal, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid()}")
        try:
            result = apply(the_plan, desired, journal, should_stop=should_stop, report=report, hub=client)
        finally:
            journal.close()
        return Outcome(the_plan, result, EXIT_OK if result.converged else EXIT_ERROR)
