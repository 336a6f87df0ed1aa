"""How `make test` spreads the suite over pytest-xdist workers (``--dist loadscope``).

Each test module is one unit of work, so its module fixtures (a Dagster instance, a demo run, a
server) are set up once, on one worker. The modules that run containers share one Docker engine
(tests/support/containers.py: one dockerd per data root), so they are a single unit,
``CONTAINERS``, handed to the first free worker: that worker builds the project's image (minutes
on a fresh machine) while the others run the rest of the suite. The other units are handed out
long ones first (``LONG_FIRST``: end-to-end, then integration, then the scripts' tests, which
start servers and runs), so the short unit tests fill the end and no worker is left waiting on
one long module.

Written for pytest-xdist 3.8.0 (``LoadScopeScheduling``, its ``_split_scope`` and
``_assign_work_unit``). Its own ``--dist loadgroup`` cannot be used with pytest 9.2: it renames
``item._nodeid``, which pytest 9 no longer reads, so every test becomes its own group.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from xdist.scheduler import LoadScopeScheduling
from xdist.workermanage import WorkerController

CONTAINERS = "containers"
# The modules with tests that need the project's image (the ``project_image`` fixture).
# tests/conftest.py checks at collection that no other module asks for it.
CONTAINER_MODULES = frozenset(
    {
        "tests/integration/test_dagster_prod.py",
        "tests/integration/test_step_functions_batch.py",
        "tests/scripts/test_image.py",
    }
)


# Folders whose modules run long (real runs, servers), in the order they are handed out.
LONG_FIRST = ("tests/e2e/", "tests/integration/", "tests/scripts/", "tests/metaflow_jobs/")


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def _rank(scope: str) -> int:
    """The containers first, then LONG_FIRST's folders in order, then the rest."""
    if scope == CONTAINERS:
        return -1
    return next((i for i, folder in enumerate(LONG_FIRST) if scope.startswith(folder)), 99)


class ContainersFirst(LoadScopeScheduling):
    """Units of work are test modules, except that the container modules are one unit, which
    goes to the first worker that asks for work; then the long modules (``_rank``)."""

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)
        self._ordered = False  # the queue is put in _rank's order once, when it is complete

    def _split_scope(self, nodeid: str) -> str:
        module = module_of(nodeid)
        return CONTAINERS if module in CONTAINER_MODULES else module

    def _assign_work_unit(self, node: WorkerController) -> None:
        if not self._ordered:
            self._ordered = True
            # xdist ordered the units by their number of tests, most first; the sort is stable.
            order = sorted(self.workqueue, key=_rank)
            self.workqueue = OrderedDict((scope, self.workqueue[scope]) for scope in order)
        super()._assign_work_unit(node)
