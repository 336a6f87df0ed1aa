"""Runtime patches so moto's Step Functions interpreter really runs a Metaflow flow on Batch.

Written for moto 5.2.5 (``MOTO_VERSION``); :func:`apply` refuses any other version, because
every patch below replaces or wraps a private moto function whose shape changes between
releases. Each patch fills one gap between moto 5.2.5 and real AWS, found by deploying a
Metaflow 2.19 flow with ``step-functions create`` and running it (``execute_state_machine``
on, Batch jobs in Docker):

1. Batch task parameters/response (``_patch_batch_task_normalisation``).
   moto: ``StateTaskService._normalise_parameters`` / ``_normalise_response`` are empty, so
   the ASL parameters of ``batch:submitJob.sync`` reach botocore as ``JobName``,
   ``ContainerOverrides``... (the task fails ``States.Runtime``, cause ``'JobDefinition'`` or
   ``'JobName'``: a KeyError in moto's Batch handler) and the answer keeps boto's ``jobId``
   (the sync poller reads ``JobId``).
   AWS: Step Functions maps the PascalCase ASL names onto the service API's members and
   returns the response with PascalCase keys. Filled from botocore's operation model with
   moto's own ``_to_boto_request`` / ``_from_boto_response``.
2. Batch retries (``_patch_batch_job_attempts``). moto: ``submit_job`` drops
   ``retryStrategy`` and runs one attempt. AWS: a job runs up to ``attempts`` times
   (submit_job's ``retryStrategy``, else the job definition's), each attempt recorded in
   ``describe_jobs``' ``attempts``; the job only becomes FAILED when the last attempt fails.
3. Batch job environment (``_patch_batch_job_environment``). moto's containers get none of
   the variables AWS sets: ``AWS_BATCH_JOB_ATTEMPT`` (1-based), ``AWS_BATCH_CE_NAME``,
   ``AWS_BATCH_JQ_NAME``, ``AWS_EXECUTION_ENV`` (Metaflow: KeyError 'AWS_BATCH_JOB_ATTEMPT'),
   and no way to reach AWS. On AWS a job gets credentials from its job role (the ECS
   credentials endpoint) and calls AWS at its normal endpoints. Stand-in for the job role:
   ``AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT``, fake keys and the job's region. The
   job's own values (job definition / overrides) win. 127.0.0.1 reaches moto only when the
   containers share the host network: run moto with ``MOTO_DOCKER_NETWORK_MODE=host``.
   The per-attempt variables go to the container only, not into ``describe_jobs``.
   Also (moto bug): moto's environment merge appended to the job's own override list on
   every describe; the merge here builds a fresh list.
4. Failed job description (``_patch_batch_job_failure_details``). moto: ``describe_jobs`` of
   a job whose container exited non-zero has no ``statusReason`` and no
   ``container.exitCode`` (``describe`` overwrites the short form's ``container``).
   AWS: ``statusReason`` "Essential container in task exited" and ``container.exitCode``.
5. Execution name (``_patch_start_execution_name``). moto's executing backend uses the
   given ``name`` as is: without one (Metaflow's trigger sends none) the ARN ends in
   ``:None`` and a second start returns the first execution. AWS: a fresh UUID.
6. Multi-key JSONPath (``_patch_multi_key_json_path``). moto returns a list for
   ``$.['JobId', 'Parameters', 'Index', 'SplitParentTaskId']`` (Metaflow's OutputPath), so
   the next state fails "The JSONPath '$.JobId' could not be found". AWS (Jayway JsonPath):
   an object holding the keys that are present.
7. Abort (``_patch_batch_task_abort``, ``_patch_stop_execution``). moto: a ``.sync``
   task's Batch job (and its container) keeps running after ``stop_execution``; the
   execution stays RUNNING (``stop_execution`` returns no ``stopDate``) until the poll
   loop notices; and whatever the stopped states raise on their way out (a Map iteration
   raises "MapIterationAborted" with a str where a dict is expected) calls
   ``Environment.set_error``, which overwrites the stop: the execution ends FAILED,
   ``States.Runtime``, ``AttributeError('str' object has no attribute 'get')``.
   And the handler drops StopExecution's ``error`` and ``cause``.
   AWS: the execution is ABORTED at once, with ``stopDate`` and the ``error`` and ``cause``
   given to StopExecution, and stays ABORTED; the job of a
   running ``batch:submitJob.sync`` task is terminated (also when a sibling Map/Parallel
   branch fails and takes the state down).
8. Error names out of Map/Parallel (``_patch_branch_error_names``). moto re-raises a failed
   iteration's/branch's error as ``CustomErrorName(error)``, which refuses names starting
   with ``States.``: a Batch task failing ``States.TaskFailed`` inside a Map gives a FAILED
   execution with ``States.Runtime`` / "Custom Error Names MUST NOT begin with the prefix
   'States.'". AWS: the execution fails with the failing state's error
   (``States.TaskFailed``) and cause (the failed job's description).

Checked and not patched: ``describe_execution`` passes on the ``error`` and ``cause`` that
the program ended with (patch 8 makes them the failing state's).
"""

from __future__ import annotations

import functools
import threading
import uuid
from datetime import datetime

MOTO_VERSION = "5.2.5"

_applied = False
_submit = threading.local()  # the retryStrategy of the submit_job request being handled


def apply() -> None:
    """Patch moto in place (idempotent). Raises RuntimeError on any moto but MOTO_VERSION."""
    global _applied
    import moto

    if moto.__version__ != MOTO_VERSION:
        raise RuntimeError(
            f"tests/support/moto_sfn.py patches moto {MOTO_VERSION} internals, but moto "
            f"{moto.__version__} is installed: re-check every gap in its docstring against "
            "this version, then update the patches and MOTO_VERSION."
        )
    if _applied:
        return
    _patch_batch_task_normalisation()
    _patch_batch_task_abort()
    _patch_batch_job_attempts()
    _patch_batch_job_environment()
    _patch_batch_job_failure_details()  # wraps patch 2's _mark_stopped: keep this order
    _patch_start_execution_name()
    _patch_multi_key_json_path()
    _patch_stop_execution()
    _patch_branch_error_names()
    _applied = True


# 1. ASL <-> botocore names for Batch tasks ------------------------------------------------
@functools.lru_cache
def _operation_model(service: str, snake_action: str):
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model(service)
    by_snake = {xform_name(name): name for name in model.operation_names}
    return model.operation_model(by_snake[snake_action])


def _patch_batch_task_normalisation() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_batch import (  # noqa: E501
        StateTaskServiceBatch,
    )

    def _normalise_parameters(self, parameters, boto_service_name=None, service_action_name=None):
        operation = _operation_model(
            self._get_boto_service_name(boto_service_name),
            self._get_boto_service_action(service_action_name),
        )
        self._to_boto_request(parameters, operation.input_shape)

    def _normalise_response(self, response, boto_service_name=None, service_action_name=None):
        operation = _operation_model(
            self._get_boto_service_name(boto_service_name),
            self._get_boto_service_action(service_action_name),
        )
        self._from_boto_response(response, operation.output_shape)

    StateTaskServiceBatch._normalise_parameters = _normalise_parameters
    StateTaskServiceBatch._normalise_response = _normalise_response


# 2. Batch retries --------------------------------------------------------------------------
_EXITED = "Essential container in task exited"  # AWS's statusReason for a non-zero exit


def _will_retry(job, success: bool) -> bool:
    return not success and not job.stop and job.attempt_number < job.max_attempts


def _patch_batch_job_attempts() -> None:
    from moto.batch.models import Job
    from moto.batch.responses import BatchResponse
    from moto.batch.utils import JobStatus

    submitjob = BatchResponse.submitjob
    job_init = Job.__init__
    job_run = Job.run
    mark_stopped = Job._mark_stopped
    stop_attempt = Job._stop_attempt

    def _submitjob(self):
        _submit.retry_strategy = self._get_param("retryStrategy")
        try:
            return submitjob(self)
        finally:
            _submit.retry_strategy = None

    def _init(self, *args, **kwargs):
        job_init(self, *args, **kwargs)
        strategy = (
            getattr(_submit, "retry_strategy", None) or self.job_definition.retry_strategy or {}
        )
        self.max_attempts = min(max(int(strategy.get("attempts", 1)), 1), 10)
        self.attempt_number = 0
        self.attempt_failed = False

    def _run(self):
        for attempt in range(1, self.max_attempts + 1):
            self.attempt_number = attempt
            self.attempt_failed = False
            job_run(self)
            if not self.attempt_failed:  # succeeded, or failed for good
                return
            if self.stop:  # terminated between two attempts
                self.attempt_failed = False
                return self._mark_stopped(success=False)
            # As on AWS, the job goes back to RUNNABLE for its next attempt.
            self.status = JobStatus.RUNNABLE
            self._tick = 0

    def _mark_stopped(self, success=True):
        if self.attempt_failed:
            return  # moto's run() calls _mark_stopped(True) again after a failed container
        if not _will_retry(self, success):
            return mark_stopped(self, success)
        # A failed attempt with attempts left: close the attempt, keep the job alive.
        self.attempt_failed = True
        self.job_stopped_at = datetime.now()
        self._stop_attempt()

    def _stop_attempt(self):
        stop_attempt(self)
        if self.latest_attempt and self.exit_code is not None:
            self.latest_attempt["container"]["exitCode"] = self.exit_code
            if self.exit_code:
                self.latest_attempt["statusReason"] = _EXITED

    BatchResponse.submitjob = _submitjob
    Job.__init__ = _init
    Job.run = _run
    Job._mark_stopped = _mark_stopped
    Job._stop_attempt = _stop_attempt


# 3. What AWS puts into a Batch job's container ---------------------------------------------
def _patch_batch_job_environment() -> None:
    from moto import settings
    from moto.batch.models import Job

    get_container_property = Job._get_container_property

    def _get_container_property(self, p, default):
        if p != "environment":
            return get_container_property(self, p, default)
        env = {e["name"]: e["value"] for e in self.job_definition.container_properties.get(p, [])}
        env.update({e["name"]: e["value"] for e in self.container_overrides.get(p, [])})
        env["AWS_BATCH_JOB_ID"] = self.job_id
        if threading.current_thread() is self:  # building the container, not describing
            region = self.job_queue.backend.region_name
            role = {  # stand-in for the job role: moto's endpoint and fake credentials
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{settings.moto_server_port()}",
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": region,
                "AWS_REGION": region,
            }
            env = {**role, **env}
            env.update(
                AWS_BATCH_JOB_ATTEMPT=str(getattr(self, "attempt_number", 1)),
                AWS_BATCH_CE_NAME=self.job_queue.environments[0].name,
                AWS_BATCH_JQ_NAME=self.job_queue.name,
                AWS_EXECUTION_ENV="AWS_ECS_EC2",
            )
        return [{"name": k, "value": v} for k, v in env.items()]

    Job._get_container_property = _get_container_property


# 4. statusReason and exit code of a failed job ---------------------------------------------
def _patch_batch_job_failure_details() -> None:
    from moto.batch.models import Job

    mark_stopped = Job._mark_stopped  # the retry-aware one (patch 2 runs first)
    container_details = Job._container_details

    def _mark_stopped(self, success=True):
        final = not self.job_stopped and not self.attempt_failed and not _will_retry(self, success)
        if final and not success and self.exit_code and self.job_stopped_reason is None:
            self.job_stopped_reason = _EXITED  # set before the status turns FAILED
        mark_stopped(self, success)

    def _container_details(self):
        details = container_details(self)
        if self.job_stopped and self.exit_code is not None:
            details["exitCode"] = self.exit_code
        return details

    Job._mark_stopped = _mark_stopped
    Job._container_details = _container_details


# 5. start_execution without a name ---------------------------------------------------------
def _patch_start_execution_name() -> None:
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    start_execution = StepFunctionsParserBackend.start_execution

    def _start_execution(
        self, state_machine_arn, name=None, execution_input=None, trace_header=None
    ):
        return start_execution(
            self, state_machine_arn, name or str(uuid.uuid4()), execution_input, trace_header
        )

    StepFunctionsParserBackend.start_execution = _start_execution


# 6. $.['a', 'b'] returns an object ---------------------------------------------------------
def _patch_multi_key_json_path() -> None:
    import sys

    from jsonpath_ng.ext import parse
    from jsonpath_ng.jsonpath import Child, Fields
    from moto.stepfunctions.parser.asl.utils import json_path

    extract_json = json_path.extract_json

    def _extract_json(path, data):
        expr = parse(path)
        if (
            isinstance(expr, Child)
            and isinstance(expr.right, Fields)
            and len(expr.right.fields) > 1
        ):
            parents = expr.left.find(data)
            if len(parents) == 1 and isinstance(parents[0].value, dict):
                parent = parents[0].value
                return {key: parent[key] for key in expr.right.fields if key in parent}
        return extract_json(path, data)

    # Modules that did `from ...json_path import extract_json` hold their own reference.
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("moto.stepfunctions.parser") and (
            getattr(module, "extract_json", None) is extract_json
        ):
            module.extract_json = _extract_json
    json_path.extract_json = _extract_json


# 7a. Stopping an execution terminates the running Batch job --------------------------------
def _patch_batch_task_abort() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_batch import (  # noqa: E501
        StateTaskServiceBatch,
    )
    from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for

    build_sync_resolver = StateTaskServiceBatch._build_sync_resolver
    eval_sync = StateTaskServiceBatch._eval_sync

    def _build_sync_resolver(
        self, env, resource_runtime_part, normalised_parameters, state_credentials
    ):
        job_id = env.stack[-1]["JobId"]  # the original pops the submit_job output
        resolver = build_sync_resolver(
            self, env, resource_runtime_part, normalised_parameters, state_credentials
        )

        def _resolve():
            return resolver()

        def _terminate():
            client = boto_client_for(
                region=resource_runtime_part.region,
                service="batch",
                state_credentials=state_credentials,
            )
            client.terminate_job(jobId=job_id, reason="Stopped by Step Functions")

        _resolve.terminate_job = _terminate
        return _resolve

    def _eval_sync(self, env, sync_resolver, *args, **kwargs):
        outcome = eval_sync(self, env, sync_resolver, *args, **kwargs)
        # The poll loop ends early only when the execution (or this branch) stopped or failed.
        if not env.is_running() and hasattr(sync_resolver, "terminate_job"):
            sync_resolver.terminate_job()
        return outcome

    StateTaskServiceBatch._build_sync_resolver = _build_sync_resolver
    StateTaskServiceBatch._eval_sync = _eval_sync


# 7b. An aborted execution is ABORTED at once and stays so ------------------------------------
def _patch_stop_execution() -> None:
    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.asl.eval.environment import Environment
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped
    from moto.stepfunctions.parser.backend.execution import Execution
    from moto.stepfunctions.responses import ActionResult, StepFunctionResponse

    set_error = Environment.set_error
    stop = Execution.stop

    def _set_error(self, error):
        if isinstance(self._program_state, ProgramStopped):
            return  # errors raised while the stopped states unwind do not undo the stop
        set_error(self, error)

    def _stop(self, stop_date, error, cause):
        was_running = self.exec_status == ExecutionStatus.RUNNING
        stop(self, stop_date=stop_date, error=error, cause=cause)
        if not was_running:
            return
        # The worker thread may already have reflected ProgramStopped (ABORTED, but without
        # the stop's error and cause); if not, the execution is ABORTED from now on.
        if self.exec_status == ExecutionStatus.RUNNING:
            self.exec_status = ExecutionStatus.ABORTED
            self.stop_date = stop_date
        self.error, self.cause = error or None, cause or None

    def _stop_execution(self):
        # moto's handler drops the request's error and cause (it stops with "" and "").
        execution = self.stepfunction_backend.stop_execution(self._get_param("executionArn"))
        execution.error = self._get_param("error") or execution.error
        execution.cause = self._get_param("cause") or execution.cause
        return ActionResult({"stopDate": execution.stop_date})

    Environment.set_error = _set_error
    Execution.stop = _stop
    StepFunctionResponse.stop_execution = _stop_execution


# 8. States.* error names out of Map iterations and Parallel branches -----------------------
def _patch_branch_error_names() -> None:
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import (
        CustomErrorName,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
        StatesErrorName,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        iteration_worker,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import branches_decl

    def _error_name(error_name):
        if error_name and error_name.startswith("States."):
            return StatesErrorName.from_name(error_name)
        return CustomErrorName(error_name)

    # Both modules use the name CustomErrorName only to re-raise a branch's error.
    iteration_worker.CustomErrorName = _error_name
    branches_decl.CustomErrorName = _error_name
