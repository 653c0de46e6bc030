"""Production serving: one worker process per core, the application built in each worker.

The application is not preloaded, so no PKCS#11 session, database connection or key handle
exists before the fork; every worker initialises PKCS#11 itself (shared/FIELD-NOTES.md).

Two servers, chosen with ``TESSERA_HTTP_SERVER``:

* ``granian`` (default): a Rust HTTP/1.1 server running the WSGI application on a few blocking
  threads per worker. Measured here (bench/sso_logins.py, docs/sso.md), a staff login costs the
  service about 11 ms of CPU on granian and 13-15 ms on gunicorn; /healthz 0.25 ms against 0.4 ms.
* ``gunicorn``: gthread workers.

Either keeps client connections alive (OCSP clients poll); PKCS#11 calls are serialised per
process by ``ca.pkcs11_keys``, so a worker's threads cannot corrupt a token.
"""

from __future__ import annotations

import os
from typing import Any

SERVERS = ("granian", "gunicorn")
THREADS = 4


def chosen_server(env: dict[str, str] | None = None) -> str:
    """The configured server name; an unknown one is an error, not a silent fallback."""
    name = (os.environ if env is None else env).get("TESSERA_HTTP_SERVER") or SERVERS[0]
    if name not in SERVERS:
        raise ValueError(f"TESSERA_HTTP_SERVER must be one of {', '.join(SERVERS)}, not {name!r}")
    return name


def run(host: str, port: int, workers: int) -> None:
    """Serve ``idp.app:create_app`` until SIGTERM or SIGINT; returns when the workers have stopped."""
    if chosen_server() == "granian":
        _run_granian(host, port, workers)
    else:
        _run_gunicorn(host, port, workers)


def _run_granian(host: str, port: int, workers: int) -> None:
    from granian import Granian
    from granian.constants import Interfaces

    Granian(
        "idp.app:create_app", factory=True, interface=Interfaces.WSGI,
        address=host, port=port, workers=workers, blocking_threads=THREADS,
        http="1", log_level="warning", log_access=False, respawn_failed_workers=True, workers_kill_timeout=10,
    ).serve()


def _run_gunicorn(host: str, port: int, workers: int) -> None:
    from gunicorn.app.base import BaseApplication

    class _Gunicorn(BaseApplication):  # type: ignore[misc]
        def __init__(self, options: dict[str, Any]) -> None:
            self._options = options
            super().__init__()

        def load_config(self) -> None:
            for key, value in self._options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from idp.app import create_app

            return create_app()

    _Gunicorn({
        "bind": f"{host}:{port}", "workers": workers, "worker_class": "gthread", "threads": THREADS,
        "keepalive": 5, "preload_app": False, "timeout": 30, "graceful_timeout": 10, "accesslog": None,
        "errorlog": "-", "loglevel": "warning", "limit_request_line": 8190, "proc_name": "tessera",
    }).run()
