"""Production serving with gunicorn: one worker per core, the app built in each worker.

The application is not preloaded, so no PKCS#11 session, database connection or key handle
exists before the fork; every worker initialises PKCS#11 itself (shared/FIELD-NOTES.md).
"""

from __future__ import annotations

from typing import Any

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


def run_gunicorn(host: str, port: int, workers: int) -> None:
    _Gunicorn({
        "bind": f"{host}:{port}",
        "workers": workers,
        # gthread keeps client connections alive (OCSP clients poll); PKCS#11 calls are serialised
        # per process by ca.pkcs11_keys, so the worker threads cannot corrupt a token
        "worker_class": "gthread",
        "threads": 4,
        "keepalive": 5,
        "preload_app": False,
        "timeout": 30,
        "graceful_timeout": 10,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "limit_request_line": 8190,
        "proc_name": "tessera",
    }).run()
