"""moto's own server with the patches of tests/support/moto_sfn.py applied.

    cd /work/main && MOTO_PORT=PORT MOTO_DOCKER_NETWORK_MODE=host DOCKER_HOST=... \\
        AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 \\
        .venv/bin/python -m tests.support.moto_server -H 127.0.0.1 -p PORT [--execute]

Every argument but ``--execute`` goes to ``moto.server.main`` (the ``moto_server`` command).
Execution is OFF unless ``--execute`` is given: then the server starts as if the caller had
POSTed ``{"stepfunctions": {"execute_state_machine": true}, "batch": {"use_docker": true}}``
to ``/moto-api/config``. A caller may instead POST that itself (the patches are applied
either way). Set MOTO_PORT to the port: the Step Functions interpreter calls
``http://localhost:$MOTO_PORT`` and the Batch containers ``http://127.0.0.1:$MOTO_PORT``.
"""

import sys

from tests.support import moto_sfn

EXECUTE = {"stepfunctions": {"execute_state_machine": True}, "batch": {"use_docker": True}}


def main(argv: list[str]) -> None:
    moto_sfn.apply()
    import moto.server
    from moto.moto_api._internal.models import moto_api_backend

    if "--execute" in argv:
        argv = [a for a in argv if a != "--execute"]
        moto_api_backend.set_config(EXECUTE)
    moto.server.main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
