"""A fork server for the `tessera` command in tests: one process per test process that imported the
command once, and forks a fresh child for every call.

A `tessera` subprocess spends about a second of CPU starting Python and importing the service
before it does anything; the suite makes thousands of calls. The child of this server is still a
process of its own, as the real command is: its own environment, working folder, umask, standard
input/output/error, PKCS#11 state (the server never initialises a PKCS#11 library), exit status,
and death by a signal (``returncode`` -9 for a SIGKILL, as :mod:`subprocess` reports it). It only
skips the start-up: the interpreter and the imports are inherited, copy-on-write (fork(2)).

Run as a script by :mod:`tests.servers` (``python tests/forkserver.py SOCKET``); it is no test
module and imports nothing of ``tests``. Protocol, on an AF_UNIX SOCK_SEQPACKET socket, one
connection per call: the client sends a JSON request (args, env, cwd, umask) with three file
descriptors (stdin, stdout, stderr) attached (SCM_RIGHTS, unix(7)); the server forks a runner that
forks the command, sends its PID, waits for it and sends the wait status. The server exits when
the test process that started it is gone. Servers (`tessera serve`, `tessera card agent`) are
forked the same way, in a session of their own (:func:`tests.servers.start_server`).
"""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

#: what the command imports at start or on most calls (cli.main imports every command group; `serve`
#: builds the application in each worker, which then imports nothing)
PRELOAD = ("cli.main", "idp.deployment", "idp.home", "idp.settings", "idp.app", "idp.server", "cardsim.issuance",
           "cardsim.reader", "cardsim.personalisation", "cardsim.agent", "audit.verification", "backup")


def _exit_code(exc: SystemExit) -> int:
    """The status Python gives ``sys.exit(code)`` (None: 0; a number; anything else printed, 1)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _run_command(request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: become `tessera ARGS` as a fresh process would be, run it, exit."""
    if request["session"]:
        os.setsid()  # as Popen(start_new_session=True): the tests stop a server by its session
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    os.closerange(3, 4096)  # what exec(2) with close_fds would leave: 0, 1, 2
    os.environ.clear()
    os.environ.update(request["env"])
    time.tzset()
    os.umask(request["umask"])
    os.chdir(str(request["cwd"]))
    sys.argv = [request["program"], *request["args"]]
    code = 1
    try:
        from cli.main import main

        main()
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:  # noqa: B036 (what the interpreter does with an uncaught exception)
        traceback.print_exc()
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code & 0xFF)


def _runner(conn: socket.socket) -> None:
    """In a forked runner: take one request, fork the command, report its PID and wait status."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    message, fds, _flags, _address = socket.recv_fds(conn, 1 << 20, 3)
    request = json.loads(message)
    pid = os.fork()
    if pid == 0:
        _run_command(request, fds)
    for fd in fds:
        os.close(fd)
    conn.send(json.dumps({"pid": pid}).encode())
    _, status = os.waitpid(pid, 0)
    conn.send(json.dumps({"status": status}).encode())


def serve(path: str) -> None:
    parent = os.getppid()
    sys.path[0] = str(Path(sys.executable).parent)  # as the `tessera` console script sees it
    for module in PRELOAD:
        __import__(module)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # runners are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(64)
    print("ready", flush=True)
    while os.getppid() == parent:
        if not select.select([listener], [], [], 1.0)[0]:
            continue
        conn, _ = listener.accept()
        if os.fork() == 0:
            code = 0
            try:
                listener.close()
                _runner(conn)
            except BaseException:  # noqa: B036 (a runner never returns into the server's loop)
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        conn.close()
    listener.close()
    shutil.rmtree(Path(path).parent, ignore_errors=True)  # the test process left without removing it


if __name__ == "__main__":
    serve(sys.argv[1])
