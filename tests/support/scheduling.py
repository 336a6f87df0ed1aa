"""How `make test` spreads the suite over pytest-xdist workers (``--dist loadscope``).

Each test module is one unit of work, so its module fixtures (a Dagster instance, a demo run, a
server) are set up once, on one worker. The modules that run containers share one Docker engine
(tests/support/containers.py: one dockerd per data root), so they are a single unit,
``CONTAINERS``, handed to the first free worker: that worker builds the project's image (minutes
on a fresh machine) while the others run the rest of the suite.

Written for pytest-xdist 3.8.0 (``LoadScopeScheduling``, its ``_split_scope`` and
``_assign_work_unit``). Its own ``--dist loadgroup`` cannot be used with pytest 9.2: it renames
``item._nodeid``, which pytest 9 no longer reads, so every test becomes its own group.
"""

from __future__ import annotations

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


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


class ContainersFirst(LoadScopeScheduling):
    """Units of work are test modules, except that the container modules are one unit, which
    goes to the first worker that asks for work."""

    def _split_scope(self, nodeid: str) -> str:
        module = module_of(nodeid)
        return CONTAINERS if module in CONTAINER_MODULES else module

    def _assign_work_unit(self, node: WorkerController) -> None:
        if CONTAINERS in self.workqueue:
            self.workqueue.move_to_end(CONTAINERS, last=False)
        super()._assign_work_unit(node)
