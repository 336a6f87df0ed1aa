"""Pull the champion model from a lakehouse, deploy it, and smoke-test the deployment.

Three commands, each a make target (``make pull-model``, ``make deploy``, ``make smoke``), run
by ``scripts/deploy_model.py`` (:mod:`fraud_cli.deploy.cli`):

``pull`` (:mod:`~fraud_cli.deploy.pull`)
    Reads the champion pointer (``models/champion.json``) of ``LAKEHOUSE_URI`` (any fsspec URI:
    a path, ``s3://``, ``abfss://``), downloads the bundle (``manifest.json`` +
    ``model.safetensors``), verifies it with :meth:`fraud_core.model.bundle.ModelBundle.from_parts`
    (checksum, format, features) and writes it to ``MODEL_DIR`` as a one-model lakehouse
    (``models/VERSION/...`` and ``models/champion.json``).
``deploy``
    Deploys the pulled model (pulling first when ``MODEL_DIR`` holds none) to ``DEPLOY_TARGET``:

    - ``fastapi`` (:mod:`~fraud_cli.deploy.service`): copies the bundle into the lakehouse the
      service watches, moves its champion pointer last, and waits until the service's
      ``/readyz`` reports the new version (the service swaps without restart).
    - ``sagemaker`` (:mod:`~fraud_cli.deploy.sagemaker`): uploads the bundle as
      ``model.tar.gz`` (a one-model lakehouse, so the container runs the same API with
      ``LAKEHOUSE_URI=/opt/ml/model``), creates the model and endpoint configuration named after
      the version, creates the endpoint or updates it; waits until it is InService.
    - ``k8s`` (:mod:`~fraud_cli.deploy.k8s`): renders deploy/k8s/*.yaml with the image and
      bundle version injected, validates them against the Kubernetes API models
      (:mod:`~fraud_cli.deploy.k8s_manifests`) and writes them out; with ``K8S_APPLY=true``
      also runs ``kubectl apply`` and waits for the rollout.
``smoke`` (:mod:`~fraud_cli.deploy.smoke`)
    Checks the deployed API: ``/readyz`` serves the pulled version and ``POST /v1/score``
    scores the example claim with it; for sagemaker, the endpoint is InService on this
    version's configuration.

Every setting is read once, by :class:`fraud_cli.deploy.settings.DeploySettings`. AWS
credentials, region and endpoint come from the usual AWS environment (``AWS_ENDPOINT_URL``
points boto3 and s3fs at an S3-compatible store or at moto in the tests). Nothing secret is
printed.
"""


class DeployError(RuntimeError):
    """The deployment did not happen or did not become ready; the message says why."""


class SettingError(ValueError):
    """A required setting is missing or malformed; the message names it."""
