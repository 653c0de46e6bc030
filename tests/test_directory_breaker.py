"""A hung directory cannot hold the service (issue 16, item 2): a total deadline per request, and a
circuit breaker and bulkhead per server (directory.connection).

Unit: the breaker opens after N failures in a row, fails at once while open, lets one trial through
after the cool-down (closing on a reply, opening again on a failure), and lets only so many calls
wait on a server; the deadline bounds every wait and nothing starts once it is spent; with two servers, the client
fails over to the second and back to the first once it returns.
Integration (the drill): the test's private slapd is stopped with SIGSTOP under `tessera serve
--workers 2`: /readyz says so within its bound, four staff members logging in at once get 503
within the deadline, soon at once, while OCSP and JWKS answer as fast as before; after SIGCONT and the cool-down, logins work again.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ldap
import pytest
import requests

from directory.client import Directory, InvalidCredentials
from directory.config import DirectoryConfig
from directory.connection import Breaker, CircuitOpen, configure, deadline
from tests.fixtures_directory import SlapdServer, new_uid
from tests.fixtures_web import PASSWORD, IdpServer, csrf_of, private_idp
from tests.servers import TESSERA, free_port, running_server, wait_healthy


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _fail(breaker: Breaker, exc: Exception | None = None) -> None:
    with pytest.raises(type(exc) if exc else OSError):
        with breaker.call(5):
            raise exc or TimeoutError("timed out")


def test_the_breaker_opens_after_failures_and_tries_once_after_the_cooldown() -> None:
    clock = _Clock()
    breaker = Breaker("ldap://hung:389", failures=3, cooldown=30, concurrency=2, clock=clock)
    _fail(breaker)
    # libldap's ldap.TIMEOUT, as LdapConnection raises it
    _fail(breaker, TimeoutError("ldap://hung:389 did not answer in time"))
    assert breaker.failures == 2
    _fail(breaker, ConnectionRefusedError(111, "Connection refused"))  # costs no time: not counted...
    assert breaker.failures == 2
    with breaker.call(5):
        pass  # ...and a reply resets the count
    assert breaker.state == "closed" and breaker.failures == 0
    for _ in range(3):
        _fail(breaker)
    assert breaker.state == "open"
    began = time.monotonic()
    with pytest.raises(CircuitOpen, match="not asked for 30 s more"):
        with breaker.call(5):
            raise AssertionError("an open breaker lets no call through")
    assert time.monotonic() - began < 0.05
    clock.now += 31
    assert breaker.state == "half-open"
    with breaker.call(5, reply=False):  # the trial's connect: proves nothing yet
        others = []

        def other() -> None:
            try:
                with breaker.call(5):
                    others.append("through")
            except CircuitOpen:
                others.append("refused")

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert others == ["refused"]  # one trial at a time
    assert breaker.state == "half-open"
    _fail(breaker)  # the same thread's bind times out: open again, for a whole cool-down
    assert breaker.state == "open"
    clock.now += 31
    with breaker.call(5):
        pass  # the trial gets a reply
    assert breaker.state == "closed"


def test_only_so_many_requests_wait_on_one_server() -> None:
    breaker = Breaker("ldap://slow:389", concurrency=2)
    breaker.SLOW_FAILURE = 0.3
    release = threading.Event()
    entered = threading.Barrier(3)

    def hold() -> None:
        with deadline(10), breaker.call(5):
            entered.wait()
            release.wait(10)

    holders = [threading.Thread(target=hold) for _ in range(2)]
    for thread in holders:
        thread.start()
    entered.wait()
    began = time.monotonic()
    with deadline(10):
        with pytest.raises(CircuitOpen, match="2 calls already wait"):
            with breaker.call(5):
                pass
    assert 0.2 < time.monotonic() - began < 0.6  # waited while the holders were young, not once they were stuck
    began = time.monotonic()
    with deadline(10):
        with pytest.raises(CircuitOpen):
            with breaker.call(5):
                pass
    assert time.monotonic() - began < 0.05  # the holders are stuck: at once
    with breaker.call(5):
        pass  # outside a request's deadline (the CLI, a batch): no limit
    release.set()
    for thread in holders:
        thread.join()
    with deadline(10), breaker.call(5):
        pass


def test_a_waiting_request_gets_a_place_a_healthy_call_frees() -> None:
    breaker = Breaker("ldap://busy:389", concurrency=1)

    def quick() -> None:
        with deadline(10), breaker.call(5):
            time.sleep(0.1)

    thread = threading.Thread(target=quick)
    thread.start()
    time.sleep(0.02)
    began = time.monotonic()
    with deadline(10), breaker.call(5):
        assert 0.03 < time.monotonic() - began < 0.4
    thread.join()


def test_the_deadline_bounds_every_wait() -> None:
    breaker = Breaker("ldap://x:389")
    with deadline(0.5):
        with breaker.call(5) as wait:
            assert 0.4 < wait <= 0.5
        with deadline(10):  # nested: the sooner one stays
            with breaker.call(5) as wait:
                assert wait <= 0.5
        time.sleep(0.55)
        with pytest.raises(CircuitOpen, match="deadline"):
            with breaker.call(5):
                raise AssertionError("nothing is sent once the deadline is spent")
    assert breaker.failures == 0  # a spent deadline is not the server's failure
    with breaker.call(5) as wait:
        assert wait == 5


def test_the_limits_come_from_the_environment(tmp_path: Path) -> None:
    env = {"TESSERA_LDAP_URLS": "ldap://a:389", "TESSERA_LDAP_BASE_DN": "dc=x", "TESSERA_LDAP_DEADLINE": "3.5",
           "TESSERA_LDAP_BREAKER_FAILURES": "5", "TESSERA_LDAP_BREAKER_COOLDOWN": "10",
           "TESSERA_LDAP_SERVER_CONCURRENCY": "3"}
    config = DirectoryConfig.from_env(tmp_path, env)
    assert (config.deadline, config.breaker_failures, config.breaker_cooldown, config.server_concurrency) == (
        3.5, 5, 10.0, 3)
    defaults = DirectoryConfig.from_env(tmp_path, {"TESSERA_LDAP_URLS": "ldap://a:389", "TESSERA_LDAP_BASE_DN": "dc=x"})
    assert (defaults.deadline, defaults.breaker_failures, defaults.breaker_cooldown) == (8.0, 3, 30.0)


def test_failback_to_the_first_server_once_it_is_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import directory.client
    import directory.connection

    monkeypatch.setattr(directory.connection, "FAILBACK_AFTER", 0.3)
    monkeypatch.setattr(directory.client, "_SKIP_FAILED_SERVER_SECONDS", 0.3)
    base = Path(tempfile.mkdtemp(prefix="tessera-failback-"))
    first, second = SlapdServer(base / "1"), SlapdServer(base / "2")
    first.start()
    second.start()
    try:
        shared = second.admin()  # two replicas share the service account's password
        shared.modify_s(second.config.bind_dn, [(ldap.MOD_REPLACE, "userPassword", [first.config.bind_password.encode()])])
        shared.unbind_s()
        on_first, on_second = new_uid("one"), new_uid("two")  # each on one server only: who answered
        first.create_user(on_first, PASSWORD)
        second.create_user(on_second, PASSWORD)
        config = first.config.with_urls(first.url, second.url)
        configure(config)
        with Directory(config) as staff:
            assert staff.authenticate(on_first, PASSWORD).uid == on_first
            first.stop()
            assert staff.authenticate(on_second, PASSWORD).uid == on_second  # failed over
            assert staff.authenticate(on_second, PASSWORD).uid == on_second  # and stays there
            first.start()
            time.sleep(0.5)
            assert staff.authenticate(on_first, PASSWORD).uid == on_first  # back on the first
            with pytest.raises(InvalidCredentials):
                staff.authenticate(on_second, PASSWORD)
    finally:
        first.stop()
        second.stop()
        shutil.rmtree(base, ignore_errors=True)


# -- the hung-directory drill ------------------------------------------------------------------
COOLDOWN = 20.0  # longer than the hung phase: no trial call during it
#: the password step passed: the TOTP form (200) or, before enrolment, the way to it (302)
PASSED = (200, 302)


@pytest.fixture(scope="module")
def hung_idp() -> Iterator[IdpServer]:
    with private_idp("tessera-hung-", {"TESSERA_LDAP_BREAKER_COOLDOWN": str(COOLDOWN)}) as server:
        yield server


def _password_step(idp: IdpServer, uid: str) -> tuple[int, float]:
    with requests.Session() as agent:
        page = agent.get(idp.url("/login"), timeout=30)
        began = time.monotonic()
        answer = agent.post(idp.url("/login"), data={"username": uid, "password": PASSWORD,
                                                     "csrf_token": csrf_of(page.text)}, allow_redirects=False, timeout=30)
        return answer.status_code, time.monotonic() - began


def _ocsp_body() -> bytes:
    return b"\x30\x00"  # malformed: the responder still answers, from the database and its key


def _probe(idp: IdpServer, stop: threading.Event, latencies: list[float]) -> None:
    """OCSP and JWKS, on new connections, one after the other until ``stop``."""
    while not stop.is_set():
        for send in (lambda: requests.post(idp.url("/ocsp/staff"), data=_ocsp_body(), timeout=30,
                                           headers={"Content-Type": "application/ocsp-request"}),
                     lambda: requests.get(idp.url("/oidc/jwks.json"), timeout=30)):
            began = time.monotonic()
            assert send().status_code == 200
            latencies.append(time.monotonic() - began)
        time.sleep(0.05)


def _latencies_while(idp: IdpServer, seconds: float | None, work: object = None) -> list[float]:
    stop, latencies = threading.Event(), []
    thread = threading.Thread(target=_probe, args=(idp, stop, latencies))
    thread.start()
    try:
        if callable(work):
            work()
        else:
            time.sleep(seconds or 0)
    finally:
        stop.set()
        thread.join()
    return latencies


def test_a_hung_directory_costs_logins_a_deadline_and_nothing_else(hung_idp: IdpServer) -> None:
    idp = hung_idp
    users = [new_uid("h") for _ in range(4)]
    for uid in users:
        idp.directory.create_user(uid, PASSWORD)
    assert _password_step(idp, users[0])[0] in PASSED  # pooled connections to the directory exist
    before = _latencies_while(idp, 3)
    pid = idp.directory.process.pid
    assert pid is not None
    deadline_seconds = DirectoryConfig.deadline
    rounds: list[list[tuple[int, float]]] = []

    def logins() -> None:
        with ThreadPoolExecutor(4) as pool:  # four at once, as many as a worker has threads
            while len(rounds) < 8 and not (rounds and max(t for _, t in rounds[-1]) < 1.0):
                rounds.append(list(pool.map(lambda uid: _password_step(idp, uid), users)))

    os.kill(pid, signal.SIGSTOP)
    try:
        began = time.monotonic()
        ready = requests.get(idp.url("/readyz"), timeout=30)
        ready_took = time.monotonic() - began
        assert ready.status_code == 503 and ready.json()["checks"]["directory"]["status"] == "failing"
        assert ready.json()["checks"]["database"]["status"] == "ok" and ready_took < 3.0  # the probe never hangs
        during = _latencies_while(idp, None, logins)
    finally:
        os.kill(pid, signal.SIGCONT)
    codes = [code for one in rounds for code, _ in one]
    took = [seconds for one in rounds for _, seconds in one]
    print(f"/readyz while hung: 503 in {ready_took:.2f} s ({ready.json()['checks']['directory']['detail']})")
    print(f"logins while hung, by round: {[[round(t, 2) for _, t in one] for one in rounds]}")
    print(f"OCSP+JWKS before: median {statistics.median(before) * 1000:.0f} ms, max {max(before) * 1000:.0f} ms "
          f"({len(before)}); while hung: median {statistics.median(during) * 1000:.0f} ms, "
          f"max {max(during) * 1000:.0f} ms ({len(during)})")
    assert set(codes) == {503}
    assert max(took) < deadline_seconds + 1.5  # none waits beyond the deadline
    # each worker's breaker opens after 3 failures (a login that waits counts one or two, and two
    # may wait at once): at most 2 x 4 logins wait, and once both are open every login fails at once
    assert sum(t > 1.0 for t in took) <= 8
    assert max(t for _, t in rounds[-1]) < 1.0, "some logins still wait after 8 rounds"
    assert max(during) < 1.0 and statistics.median(during) < statistics.median(before) + 0.1
    began = time.monotonic()
    while _password_step(idp, users[1])[0] not in PASSED:  # the trial after the cool-down closes the breaker
        assert time.monotonic() - began < COOLDOWN + 15
        time.sleep(0.5)
    print(f"logins work again {time.monotonic() - began:.1f} s after SIGCONT")
