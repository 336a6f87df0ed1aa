# One image for every remote place the project runs (see deploy/docker/entrypoint.sh):
#   SageMaker          `docker run IMAGE serve`: the scoring API on 0.0.0.0:8080, /ping and
#                      /invocations, the model from /opt/ml/model (LAKEHOUSE_URI set by the deploy)
#   AWS Batch          FraudTrainingFlow's steps (Metaflow sends `bash -c '...'`, passed through);
#                      the code package brings the commit's fraud_core + metaflow_jobs, the image
#                      brings Python and every dependency
#   Kubernetes         deploy/k8s/deployment.yaml runs uvicorn in it
#   Dagster            the code location: `dagster api grpc -m fraud_assets.definitions ...`
#
# Build (docs/aws.md, "The image"):
#   docker build -t fraud-mlops:$(git rev-parse --short HEAD) .
# Build arguments:
#   BASE_IMAGE        a Debian-like image with Python 3.11 and its venv module
#                     (default python:3.11-slim; the tests use a base made from Debian's packages)
#   TORCH_INDEX_URL   where pip finds the CPU build of torch (default PyTorch's CPU index)
#   PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, PIP_NO_INDEX
#                     pip's own settings, passed to every pip install: a package mirror
#                     (Artifactory, Nexus, devpi; TORCH_INDEX_URL then names its PyTorch
#                     remote), or an offline build from a page of wheels (PIP_FIND_LINKS with
#                     PIP_NO_INDEX=1: the tests build so, from the packages of .venv)
# Only the legacy builder's features are used, so any Docker engine builds it.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX

# METAFLOW_SKIP_INSTALL_DEPENDENCIES: a Batch task uses the image's boto3 and requests instead
# of pip-installing them at every start. Bytecode may be written (no PYTHONDONTWRITEBYTECODE):
# site-packages is compiled below and not writable at run time, but the code package a Batch
# task unpacks is run by several processes in a row, which then compile it once.
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/fraud \
    PATH=/opt/fraud/bin:$PATH \
    FRAUD_SERVE_HOST=0.0.0.0 \
    FRAUD_SERVE_PORT=8080 \
    USERNAME=fraud \
    METAFLOW_SKIP_INSTALL_DEPENDENCIES=1

# LightGBM's OpenMP runtime (libgomp1), which slim images lack: `import lightgbm` fails
# without it unless torch happened to load its own copy first. Installed with apt only when
# the base does not have it (the tests' base does: no network needed there).
RUN ldconfig -p | grep -q 'libgomp\.so\.1' \
    || (apt-get update && apt-get install -y --no-install-recommends libgomp1 \
        && rm -rf /var/lib/apt/lists/*)

# torch first, CPU build, pinned like pyproject.toml (an unpinned torch pulls a CUDA build).
RUN python3 -m venv "$VIRTUAL_ENV" \
    && pip install --no-compile --index-url "$TORCH_INDEX_URL" torch==2.13.0

# The dependencies, in a layer of their own: it is rebuilt only when they change. Bytecode is
# compiled once for everything, on every core (pip compiles file by file, on one), except the
# packages' own test suites (pandas/tests, sympy/.../tests, ...: a fifth of the files, never
# imported); like pip, compileall skips a file that does not compile (some ship Python 2 data).
WORKDIR /src
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && pip install --no-compile -c constraints.txt -r requirements.txt \
    && (python -m compileall -q -j 0 -x '/tests?/' "$VIRTUAL_ENV/lib" > /dev/null || true)

COPY README.md ./
COPY fraud_core ./fraud_core
COPY fraud_assets ./fraud_assets
COPY fraud_cli ./fraud_cli
COPY expectations ./expectations
COPY metaflow_jobs ./metaflow_jobs
COPY serving ./serving
COPY deploy/docker/entrypoint.sh /usr/local/bin/fraud-entrypoint
RUN pip install --no-deps . \
    && rm -rf /src \
    && useradd --create-home --uid 10001 fraud

# A writable working directory: Metaflow unpacks its code package into it on Batch.
USER fraud
WORKDIR /home/fraud
EXPOSE 8080
ENTRYPOINT ["fraud-entrypoint"]
CMD ["serve"]
