"""A stand-in for the Kubernetes API server: it accepts ``POST .../namespaces/NS/jobs`` and keeps
what it was sent, so a test can check the Job a real K8sRunLauncher built and sent over HTTP.

No cluster can run on this machine kind (no kind/k3s binaries from its registries); this is the
one part of a Kubernetes launch that is imitated. Written for dagster-k8s 0.29.27 and the
kubernetes client 36 (it only serves ``create_namespaced_job``).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

_JOBS = re.compile(r"^/apis/batch/v1/namespaces/([^/]+)/jobs$")


@dataclass
class RecordingK8sApi:
    url: str
    jobs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (namespace, Job)

    def kubeconfig(self, folder: Path) -> Path:
        """A kubeconfig whose current context is this server."""
        path = folder / "kubeconfig"
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "test", "cluster": {"server": self.url}}],
                    "users": [{"name": "test", "user": {"token": "test-token"}}],
                    "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
                    "current-context": "test",
                }
            )
        )
        return path


@contextlib.contextmanager
def recording_k8s_api() -> Iterator[RecordingK8sApi]:
    """The server on 127.0.0.1 (a free port), stopped when the block ends."""
    api: RecordingK8sApi

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            match = _JOBS.match(self.path.split("?")[0])
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if not match:
                self._answer(404, {"kind": "Status", "code": 404, "message": self.path})
                return
            api.jobs.append((match.group(1), body))
            self._answer(201, body)

        def _answer(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api = RecordingK8sApi(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
