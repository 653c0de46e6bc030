"""Production serving: one worker process per core, the application built in each worker.

The application is not preloaded, so no PKCS#11 session, database connection or key handle
exists before the fork; every worker initialises PKCS#11 itself (docs/operations.md).

Two servers, chosen with ``TESSERA_HTTP_SERVER``:

* ``granian`` (default): a Rust HTTP/1.1 server. It runs the application through its ASGI
  interface behind :class:`idp.http_front.BufferedBodies`: a request's body is read on the
  worker's event loop, within ``TESSERA_HTTP_READ_TIMEOUT`` seconds and
  ``TESSERA_HTTP_MAX_BODY_BYTES``, before one of :data:`THREADS` threads runs the Flask
  application (:class:`idp.http_front.WholeRequests`). granian's own WSGI interface lets the
  application's thread read the body from the socket with no deadline: eight clients that
  announced more body than they sent stopped ``--workers 2``. The headers have granian's
  deadline (the same setting) and a buffer of :data:`MAX_HEADER_BYTES` (431 beyond about
  40-70 KB). The price, measured with one worker on a busy 2-core machine: 1.18 ms of server CPU
  per small request against 0.62 ms on granian's WSGI (0.25 ms of it is granian's async
  interface itself), so about 2 ms more per 4-request staff login (docs/operations.md). Still
  the default: gunicorn costs more per login (13-15 ms against 11 ms, docs/sso.md) and does not
  bound body reads either.
* ``gunicorn``: gthread workers. It does not bound body reads (a thread reads the socket
  itself): put a buffering proxy in front if you choose it.

Supervision, two layers, so that a worker failing on one request never takes the service down:

* granian respawns a crashed worker, but gives up and exits the whole server ("Worker crash
  loop detected") when a worker dies again within 5.5 s of its respawn: five bad requests in a
  row stopped the service. :func:`_granian_server` subclasses granian's server so that it never
  gives up: a crashed worker is logged and respawned, after a pause that doubles from 0.5 s to
  5 s while the same worker keeps dying within 5.5 s (so a worker that cannot start does not
  spin). The other workers serve meanwhile. (This overrides granian's ``_respawn_workers``; the
  pin ``granian>=2.8,<3`` and tests/test_slow_clients.py guard it.) On Linux each granian
  worker listens itself (SO_REUSEPORT): while every worker is down at once, connections are
  refused, and one the kernel had queued for a worker as it died is reset
  (``sysctl net.ipv4.tcp_migrate_req=1`` moves those to a live worker).
* :func:`run` restarts the server whenever it stops on its own anyway (gunicorn halts when a
  worker fails to boot), with a backoff from 1 s doubling to 30 s, reset after a minute of
  service, and logs each restart. Only SIGTERM or SIGINT end it.

Either keeps client connections alive (OCSP clients poll); PKCS#11 calls are serialised per
process by ``ca.pkcs11_keys``, so a worker's threads cannot corrupt a token.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from idp.settings import ConfigurationError, Settings

SERVERS = ("granian", "gunicorn")
THREADS = 4
#: granian's HTTP/1 read buffer, which bounds a request head (line and headers): it checks as the buffer
#: grows, so heads of up to about twice this pass (measured: 40 KB passes, 70 KB gets 431)
MAX_HEADER_BYTES = 32 * 1024
#: restart backoff after the server stopped on its own: first, ceiling, and calm period that resets it
BACKOFF_FIRST, BACKOFF_MAX, BACKOFF_RESET_AFTER = 1.0, 30.0, 60.0

log = logging.getLogger("idp.server")


def chosen_server(env: dict[str, str] | None = None) -> str:
    """The configured server name; an unknown one is an error, not a silent fallback."""
    name = (os.environ if env is None else env).get("TESSERA_HTTP_SERVER") or SERVERS[0]
    if name not in SERVERS:
        raise ValueError(f"TESSERA_HTTP_SERVER must be one of {', '.join(SERVERS)}, not {name!r}")
    return name


def run(host: str, port: int, workers: int) -> None:
    """Serve ``idp.app:create_app`` until SIGTERM or SIGINT, restarting the server whenever it
    stops on its own (with backoff); returns when stopped by a signal."""
    settings = Settings.from_env()
    if not 1 <= settings.http_read_timeout <= 60:
        raise ConfigurationError(f"TESSERA_HTTP_READ_TIMEOUT must be 1 to 60 seconds, not {settings.http_read_timeout}")
    if settings.http_max_body_bytes < 1:
        raise ConfigurationError("TESSERA_HTTP_MAX_BODY_BYTES must be at least 1")
    claim_address(host, port)  # held while serving: a second deployment cannot share the port
    from idp.metrics import prepare_folder

    prepare_folder(settings.home, port)  # every worker's counters in <home>/metrics/<port> (idp/metrics.py)
    try:
        if chosen_server() == "granian":
            supervise(lambda: _run_granian(host, port, workers, settings))
        else:
            supervise(lambda: _run_gunicorn(host, port, workers))
    finally:
        release_address(host, port)


#: the addresses this process has claimed, and their guards
_claimed: dict[tuple[str, int], socket.socket] = {}


def claim_address(host: str, port: int) -> socket.socket:
    """Make sure nothing listens on ``host:port`` yet, and that no other ``tessera serve`` starts on
    it while this one runs (until :func:`release_address`); returns the guard.

    granian's workers listen with SO_REUSEPORT (Linux lets every socket of the same user that sets
    it share the port): a second deployment on the same port used to start "successfully" and the
    kernel split connections between the two (two different root CAs answered ``/ca/root.crt``
    alternately); a port held by another program ended in a traceback from every worker. The
    check binds the address without SO_REUSEPORT, which any listener refuses (EADDRINUSE); the
    guard is an abstract Unix socket named after the address (Linux, unix(7)), which only one
    process can bind, so two deployments started at the same moment cannot both pass the check.
    Raises ConfigurationError (one line from the command) when the address is taken. A second
    claim by the same process returns the first one's guard (a command may check before it starts
    anything, then :func:`run` checks again)."""
    if (host, port) in _claimed:
        return _claimed[(host, port)]
    taken = ConfigurationError(f"{host}:{port} is already in use (by another Tessera deployment or another "
                               "program): stop it or choose another --port")
    guard = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        guard.bind(f"\0tessera-serve {host}:{port}")
    except OSError:
        guard.close()
        raise taken from None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        guard.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # connections in TIME_WAIT do not count
        try:
            probe.bind(address)
        except OSError as exc:
            guard.close()
            if exc.errno == errno.EADDRINUSE:
                raise taken from None
            raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    _claimed[(host, port)] = guard
    return guard


def release_address(host: str, port: int) -> None:
    """End this process's claim of ``host:port`` (:func:`claim_address`)."""
    guard = _claimed.pop((host, port), None)
    if guard is not None:
        guard.close()


def supervise(serve_once: Callable[[], bool], sleep: Callable[[float], bool] | None = None) -> int:
    """Call ``serve_once`` until it returns True (stopped by a signal); return the restarts made.

    ``sleep(seconds)`` waits between restarts and returns True if a stop signal came meanwhile
    (default: waits on SIGTERM/SIGINT)."""
    sleep = sleep or _sleep_unless_signalled
    backoff, restarts = BACKOFF_FIRST, 0
    while True:
        started = time.monotonic()
        if serve_once():
            return restarts
        if time.monotonic() - started >= BACKOFF_RESET_AFTER:
            backoff = BACKOFF_FIRST
        restarts += 1
        log.error("the HTTP server stopped on its own (workers crashed); restart %d in %.0f s", restarts, backoff)
        if sleep(backoff):
            return restarts
        backoff = min(backoff * 2, BACKOFF_MAX)


def _sleep_unless_signalled(seconds: float) -> bool:
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return stop.wait(seconds)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_granian(host: str, port: int, workers: int, settings: Settings) -> bool:
    """One run of granian; True if it stopped on SIGTERM/SIGINT, False if it gave up by itself."""
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings

    server = _granian_server()(
        "idp.http_front:create_asgi_app", factory=True, interface=Interfaces.ASGINL,
        address=host, port=port, workers=workers, blocking_threads=1, http="1",
        http1_settings=HTTP1Settings(header_read_timeout=settings.http_read_timeout * 1000,
                                     max_buffer_size=MAX_HEADER_BYTES),
        log_level="warning", log_access=False, respawn_failed_workers=True, workers_kill_timeout=10,
    )
    try:
        server.serve()
    except SystemExit as exc:  # granian exits 1 after "Worker crash loop detected"
        if server.interrupt_signal:
            return True
        if exc.code not in (0, None):
            return False
    return bool(server.interrupt_signal)


#: a worker dying again within this many seconds of its respawn counts as crashing in a loop (granian's figure)
CRASH_LOOP_SECONDS = 5.5
#: pause before respawning a worker that crashes in a loop: first and ceiling (seconds)
RESPAWN_PAUSE_FIRST, RESPAWN_PAUSE_MAX = 0.5, 5.0


def _granian_server() -> type:
    """granian's server class, changed to respawn crashed workers for ever (module docstring)."""
    from granian import Granian

    class ForeverGranian(Granian):  # type: ignore[misc,valid-type]
        def _respawn_workers(self, workers: list[int], spawn_target: Any, target_loader: Any,
                             delay: float = 0) -> None:
            now = time.monotonic()
            last: dict[int, float] = self.__dict__.setdefault("_tessera_respawned", {})
            pause: float = self.__dict__.get("_tessera_pause", 0.0)
            if not self.interrupt_signal and delay == 0:  # a crash (reload and lifetime pass a delay)
                looping = any(now - last.get(idx, -CRASH_LOOP_SECONDS - 1) <= CRASH_LOOP_SECONDS for idx in workers)
                pause = min(max(pause * 2, RESPAWN_PAUSE_FIRST), RESPAWN_PAUSE_MAX) if looping else 0.0
                self.__dict__["_tessera_pause"] = pause
                log.error("worker %s stopped unexpectedly; respawning%s",
                          ", ".join(str(idx + 1) for idx in workers), f" in {pause:.1f} s" if pause else "")
                if pause and self.main_loop_interrupt.wait(pause) and self.interrupt_signal:
                    return  # SIGTERM/SIGINT during the pause: stop, do not start a worker only to stop it
            super()._respawn_workers(workers, spawn_target, target_loader, delay)
            for idx in workers:
                last[idx] = time.monotonic()
            self.respawned_wrks.clear()  # granian's crash-loop check reads this: never give up

    return ForeverGranian


def _run_gunicorn(host: str, port: int, workers: int) -> bool:
    """One run of gunicorn; True if it stopped on a signal, False if its arbiter halted on an error."""
    from gunicorn.app.base import BaseApplication

    class _Gunicorn(BaseApplication):
        def __init__(self, options: dict[str, Any]) -> None:
            self._options = options
            super().__init__()

        def load_config(self) -> None:
            for key, value in self._options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from idp.app import create_app

            return create_app()

    application = _Gunicorn({
        "bind": f"{host}:{port}", "workers": workers, "worker_class": "gthread", "threads": THREADS,
        "keepalive": 5, "preload_app": False, "timeout": 30, "graceful_timeout": 10, "accesslog": None,
        "errorlog": "-", "loglevel": "warning", "limit_request_line": 8190, "proc_name": "tessera",
    })
    try:
        application.run()
    except SystemExit as exc:  # the arbiter's halt(): 0 on SIGTERM/SIGINT, else a boot or worker error
        return exc.code in (0, None)
    return True
