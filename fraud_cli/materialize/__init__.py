"""Materialize a selection of the asset graph: on a Dagster deployment, or in this process.

With ``DAGSTER_URL`` set, the selection is launched on that deployment through its GraphQL API
(:mod:`~fraud_cli.materialize.remote`), each run is followed to its end, and its URL is printed.
Without it, the selection runs in this process against the Dagster instance of
``DAGSTER_HOME`` (:mod:`~fraud_cli.materialize.in_process`), through
:class:`fraud_cli.orchestrate.Orchestrator` (the same Definitions, sensor and jobs). Both
resolve the selection with :mod:`~fraud_cli.materialize.plan`. ``scripts/materialize.py``
(``make materialize``) runs :mod:`~fraud_cli.materialize.cli`.

Settings (each has a flag of the same meaning; the flag wins):

==========================  ======================================================================
``DAGSTER_URL``             ``http://host:3000`` (a path prefix is kept); unset: in-process
``DAGSTER_API_TOKEN``       optional token, sent as ``Dagster-Cloud-Api-Token`` (Dagster+)
``MATERIALIZE_SELECTION``   a job name (``report_metrics``), or asset keys separated by commas or
                            spaces (``a/b`` for a key with several parts). Empty: in-process, the
                            whole cycle of ``fraud materialize``; with ``DAGSTER_URL``, an error.
``MATERIALIZE_PARTITIONS``  partition keys (comma separated) or ``all``; one run per partition.
                            Required when the selection holds partitioned assets (the in-process
                            ``ingest_batch`` job alone evaluates the landing sensor instead).
``MATERIALIZE_RUN_CONFIG``  a YAML or JSON run-config file, e.g. to pick the in-process executor
``MATERIALIZE_TIMEOUT``     seconds to wait for each run (default 3600)
==========================  ======================================================================

Exit codes: 0 every run succeeded; 1 a run failed or was canceled; 2 the selection, settings or
deployment are not usable (nothing was launched); 3 a run did not finish in time (it is
terminated).
"""

EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT = 1, 2, 3


class UsageError(Exception):
    """The selection or a setting cannot be used; nothing was launched."""
