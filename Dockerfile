# The scoring API image: one image for every deploy target of scripts/deploy_from_s3.py.
#   SageMaker runs `docker run IMAGE serve`: ENTRYPOINT fraud + "serve" -> uvicorn on 0.0.0.0:8080,
#     /ping and /invocations, the model from /opt/ml/model (LAKEHOUSE_URI set by the deploy).
#   Kubernetes (deploy/k8s/deployment.yaml) overrides the command with uvicorn directly.
# Build: docker build -t fraud-scoring:$(git rev-parse --short HEAD) .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    FRAUD_SERVE_HOST=0.0.0.0 \
    USERNAME=fraud

WORKDIR /app
# torch first, CPU build, pinned like pyproject.toml (an unpinned torch pulls a CUDA build).
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml constraints.txt README.md ./
COPY fraud_core ./fraud_core
COPY fraud_assets ./fraud_assets
COPY fraud_cli ./fraud_cli
COPY expectations ./expectations
COPY metaflow_jobs ./metaflow_jobs
COPY serving ./serving
RUN pip install -c constraints.txt . \
    && useradd --create-home --uid 10001 fraud
USER fraud
EXPOSE 8080
ENTRYPOINT ["fraud"]
CMD ["serve", "--port", "8080"]
