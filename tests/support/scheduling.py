"""How `make test` spreads the suite over pytest-xdist workers (``--dist loadscope``).

Each test module is one unit of work, so its module fixtures (a Dagster instance, a demo run, a
server) are set up once, on one worker. The modules that run containers need the project's
image (minutes to build on a fresh machine): the controlling process builds it from the start
of the session (tests/support/containers.py) and owns the one Docker engine they share. Until
the image is ready, the scheduler hands out the other modules; then the container modules come
first, longest first, on whichever workers ask, so no worker waits for the build while there is
other work. The other modules are handed out long ones first (``LONG_FIRST``: end-to-end, then
integration, then the scripts' tests, which start servers and runs), so the short unit tests fill
the end and no worker is left waiting on one long module.

Written for pytest-xdist 3.8.0 (``LoadScopeScheduling``, its ``workqueue`` and
``_assign_work_unit``). Its own ``--dist loadgroup`` cannot be used with pytest 9.2: it renames
``item._nodeid``, which pytest 9 no longer reads, so every test becomes its own group.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from xdist.scheduler import LoadScopeScheduling
from xdist.workermanage import WorkerController

# The modules with tests that need the project's image (the ``project_image`` fixture), longest
# first. tests/conftest.py checks at collection that no other module asks for it.
CONTAINER_MODULES = (
    "tests/integration/test_step_functions_batch.py",
    "tests/integration/test_dagster_prod.py",
    "tests/scripts/test_image.py",
)


# Folders whose modules run long (real runs, servers), in the order they are handed out.
LONG_FIRST = ("tests/e2e/", "tests/integration/", "tests/scripts/", "tests/metaflow_jobs/")


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def _rank(scope: str) -> int:
    """The container modules first (in their order), then LONG_FIRST's folders, then the rest."""
    if scope in CONTAINER_MODULES:
        return CONTAINER_MODULES.index(scope) - len(CONTAINER_MODULES)
    return next((i for i, folder in enumerate(LONG_FIRST) if scope.startswith(folder)), 99)


class ImageAware(LoadScopeScheduling):
    """Units of work are test modules, in ``_rank``'s order, except that the container modules
    wait while ``image_ready()`` is false and there is other work to hand out. ``needs_image``
    is called once, with the container modules collected, when any are."""

    def __init__(
        self,
        config: Any,
        log: Any = None,
        *,
        needs_image: Callable[[list[str]], None],
        image_ready: Callable[[], bool],
    ) -> None:
        super().__init__(config, log)
        self._needs_image, self._image_ready = needs_image, image_ready
        self._ordered = False  # the queue is put in _rank's order once, when it is complete

    def _assign_work_unit(self, node: WorkerController) -> None:
        if not self._ordered:
            self._ordered = True
            # xdist ordered the units by their number of tests, most first; the sort is stable.
            order = sorted(self.workqueue, key=_rank)
            self.workqueue = OrderedDict((scope, self.workqueue[scope]) for scope in order)
            containers = [scope for scope in order if scope in CONTAINER_MODULES]
            if containers:
                self._needs_image(containers)
        if not self._image_ready():
            other = next((s for s in self.workqueue if s not in CONTAINER_MODULES), None)
            if other is not None:
                self.workqueue.move_to_end(other, last=False)  # the one super() pops
        super()._assign_work_unit(node)
