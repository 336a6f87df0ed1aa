"""Create or update FraudTrainingFlow's AWS Step Functions state machine (``make deploy-training``).

Jenkins runs this when ``RUN_TRAINING=step-functions``; the ``fraud_model`` asset then triggers
the state machine (``FRAUD_TRAINING=step-functions``). The deployment itself is
:meth:`fraud_assets.resources.training.StepFunctionsTraining.deploy` (Metaflow's Step Functions
deployer): this script only names the state machine and reports.

Settings: ``FRAUD_STATE_MACHINE`` (default ``FraudTrainingFlow``), the Metaflow variables in
``fraud_assets.resources.training.STEP_FUNCTIONS_SETTINGS`` (datastore on S3, IAM roles, Batch
job queue, DynamoDB table), AWS credentials and region. Exit code 2 names what is missing.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    import dagster as dg

    from fraud_assets.resources.training import FLOW_NAME, StepFunctionsTraining

    name = os.environ.get("FRAUD_STATE_MACHINE") or FLOW_NAME
    try:
        deployed = StepFunctionsTraining(state_machine=name).deploy()
    except dg.Failure as exc:
        print(f"ERROR: {exc.description}", file=sys.stderr)
        return 2
    print(f"state machine {deployed} created or updated on AWS Step Functions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
