"""A `tessera` command's directory work has a total deadline (issue 16, item 2):
``TESSERA_LDAP_COMMAND_DEADLINE`` seconds from its first exchange with a server
(directory.connection.deadline), so a hung directory fails the command instead of hanging it.

Unit: the window of a command starts at its first exchange (a password typed at a prompt before it
does not count), then bounds every wait and lets nothing start once spent; an enclosing window
still bounds an inner one.
Drill: the test's private slapd is stopped with SIGSTOP; with an operation timeout of 30 s and a
command deadline of 3 s, `tessera directory unlock`, `tessera admin login` and `tessera directory
status` each fail within the deadline, non-zero, with an `Error:` line and no traceback.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from directory.connection import Breaker, CircuitOpen, deadline
from tests.fixtures_directory import SlapdServer, new_uid
from tests.servers import run_tessera, tessera_env

COMMAND_DEADLINE = 3.0
#: what a forked `tessera` may take beyond the deadline on a loaded test machine (the fork server imported it already)
SLACK = 2.5


def test_a_command_window_starts_at_its_first_exchange() -> None:
    breaker = Breaker("ldap://window.test:389")
    with deadline(0.4, from_first_exchange=True):
        time.sleep(0.6)  # a prompt before any directory work
        with breaker.call(5) as wait:
            assert 0 < wait <= 0.4  # not spent after 0.6 s: the clock started at this first exchange
        time.sleep(0.5)
        with pytest.raises(CircuitOpen, match="deadline is spent"):
            with breaker.call(5):
                raise AssertionError("nothing is sent once the window is spent")


def test_an_enclosing_window_bounds_an_inner_one() -> None:
    breaker = Breaker("ldap://nested.test:389")
    with deadline(0.3):
        with deadline(10, from_first_exchange=True):
            with breaker.call(5) as wait:
                assert wait <= 0.3
        with deadline(10, from_first_exchange=True):
            time.sleep(0.4)
            with pytest.raises(CircuitOpen):
                with breaker.call(5):
                    raise AssertionError("the enclosing deadline is spent")


@pytest.fixture(scope="module")
def hung_home() -> Iterator[tuple[dict[str, str], SlapdServer, str]]:
    """A `tessera init` home whose directory is a private slapd, with a user; the slapd stopped
    with SIGSTOP for the module's tests and resumed (then stopped) after them."""
    base = Path(tempfile.mkdtemp(prefix="tessera-cli-deadline-"))
    directory = SlapdServer(base / "d")
    directory.start()
    try:
        env = tessera_env(base / "home", "http://127.0.0.1:9", **directory.env, TESSERA_LDAP_TIMEOUT="30",
                          TESSERA_LDAP_COMMAND_DEADLINE=str(COMMAND_DEADLINE))
        run_tessera(env, "init")
        uid = new_uid("cd")
        directory.create_user(uid, "Correct-horse-7-battery")
        run_tessera(env, "directory", "unlock", uid)  # answers while the directory does
        pid = directory.process.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            yield env, directory, uid
        finally:
            os.kill(pid, signal.SIGCONT)
    finally:
        directory.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("command", [["directory", "unlock", "UID"], ["admin", "login", "--as", "UID", "--password-stdin"],
                                     ["directory", "status"]], ids=["unlock", "admin-login", "status"])
def test_a_hung_directory_fails_the_command_within_its_deadline(hung_home: tuple[dict[str, str], SlapdServer, str],
                                                                 command: list[str]) -> None:
    env, _directory, uid = hung_home
    began = time.monotonic()
    result = run_tessera(env, *[uid if word == "UID" else word for word in command], check=False,
                         input=b"Correct-horse-7-battery\n123456\n")
    took = time.monotonic() - began
    stderr = result.stderr.decode()
    print(f"tessera {command[0]} {command[1]} with the directory stopped: exit {result.returncode} in {took:.2f} s")
    assert result.returncode != 0 and took < COMMAND_DEADLINE + SLACK
    assert "Traceback" not in stderr
    if command[1] == "status":
        assert "answering: None" in result.stdout.decode()
    else:
        assert stderr.strip().splitlines()[-1] == \
            "Error: The staff directory is unavailable at the moment. Please try again in a few minutes."
