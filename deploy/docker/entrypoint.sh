#!/bin/sh
# The image's entry point. `serve` (the default command, and what SageMaker runs as
# `docker run IMAGE serve`) starts the scoring API on FRAUD_SERVE_HOST:FRAUD_SERVE_PORT
# (0.0.0.0:8080 in the image). Any other command runs unchanged, so the same image is an AWS
# Batch task (Metaflow sends `bash -c '...'`), a Dagster code location (`dagster api grpc ...`)
# or a shell (`docker run -it IMAGE bash`).
set -e
if [ "$#" -eq 0 ] || [ "$1" = "serve" ]; then
    [ "$#" -gt 0 ] && shift
    exec fraud serve "$@"
fi
exec "$@"
