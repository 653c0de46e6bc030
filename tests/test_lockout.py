"""Lockout is no denial of service (issue 12, finding 6): an attacker failing from one address, or
from many, never stops the owner logging in from their usual address; unknown and known accounts get
identical answers under throttling; the directory's ppolicy lock is only a backstop above it.

The service runs behind one trusted proxy hop (``TESSERA_PROXY_HOPS=1``) so that each request can
say which source address it comes from (``X-Forwarded-For``), against a slapd whose pwdMaxFailure
is the product's default (:data:`directory.slapd.DEFAULT_MAX_FAILURE`)."""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from directory.slapd import DEFAULT_MAX_FAILURE
from idp.embedded_directory import backstop_max_failure
from idp.login import GENERIC_FAILURE
from idp.settings import Settings
from tests.fixtures_directory import SlapdServer, new_uid
from tests.fixtures_web import PASSWORD, IdpServer, StaffAgent, csrf_of, private_idp
from tests.servers import TESSERA, free_port, running_server, wait_healthy

GENERIC = GENERIC_FAILURE
OWNER, ATTACKER, ELSEWHERE = "203.0.113.5", "198.51.100.7", "192.0.2.44"


@pytest.fixture(scope="module")
def proxied_idp() -> Iterator[IdpServer]:
    with private_idp("tessera-lock-", {"TESSERA_PROXY_HOPS": "1"}, max_failure=DEFAULT_MAX_FAILURE) as server:
        yield server


def _from(address: str) -> requests.Session:
    session = requests.Session()
    session.headers["X-Forwarded-For"] = address
    session.headers["Accept-Language"] = "en"  # the messages compared are the English ones
    return session


def _attempt(session: requests.Session, idp: IdpServer, username: str, password: str) -> tuple[int, str]:
    page = session.get(idp.url("/login"))
    response = session.post(idp.url("/login"), data={"username": username, "password": password,
                                                     "csrf_token": csrf_of(page.text)}, allow_redirects=False)
    error = re.search(r'id="login-error">([^<]*)<', response.text)
    return response.status_code, error.group(1) if error else ""


def test_the_directory_lock_sits_above_the_throttle() -> None:
    settings = Settings.from_env("/nonexistent", {})
    assert DEFAULT_MAX_FAILURE > settings.throttle_account_wide_failures + settings.throttle_account_failures
    assert backstop_max_failure(settings) == DEFAULT_MAX_FAILURE
    tight = Settings.from_env("/nonexistent", {"TESSERA_DIRECTORY_MAX_FAILURES": "5"})
    assert backstop_max_failure(tight) > tight.throttle_account_wide_failures + tight.throttle_account_failures


def test_attacks_elsewhere_do_not_lock_the_owner_out(proxied_idp: IdpServer) -> None:
    idp = proxied_idp
    uid = new_uid("own")
    idp.directory.create_user(uid, PASSWORD, groups=("auditors",))
    owner = StaffAgent(idp, uid, PASSWORD)
    owner.headers["X-Forwarded-For"] = OWNER
    owner.login()  # the owner's usual address from now on
    codes = list(owner.recovery_codes)
    started = time.monotonic()
    attacker = _from(ATTACKER)
    answers = {_attempt(attacker, idp, uid, f"guess-{n}") for n in range(100)}
    assert answers == {(401, GENERIC)}
    for n in range(60):  # and from sixty more addresses, past the account-wide limit (50)
        assert _attempt(_from(f"198.51.100.{100 + n}"), idp, uid, "guess") == (401, GENERIC)
    attack_seconds = time.monotonic() - started
    # a place the account never logged in from is held back now, even with the right password ...
    assert _attempt(_from(ELSEWHERE), idp, uid, PASSWORD) == (401, GENERIC)
    # ... but the owner, from their usual address, logs in: password, then a second factor
    fresh = _from(OWNER)
    page = fresh.get(idp.url("/login"))
    step = fresh.post(idp.url("/login"), data={"username": uid, "password": PASSWORD, "csrf_token": csrf_of(page.text)},
                      allow_redirects=False)
    assert step.status_code == 200 and 'action="/login/code"' in step.text, step.text[-600:]
    done = fresh.post(idp.url("/login/code"), data={"code": codes[0], "csrf_token": csrf_of(step.text)},
                      allow_redirects=False)
    assert done.status_code == 302 and fresh.get(idp.url("/account"), allow_redirects=False).status_code == 200
    # the directory never locked the account (at most 50 + 10 failures reached it, pwdMaxFailure is 100)
    with idp.directory.directory() as directory:
        assert directory.authenticate(uid, PASSWORD).uid == uid
    print(f"160 attacking attempts in {attack_seconds:.1f} s")


def test_unknown_and_known_accounts_answer_alike_under_throttling(proxied_idp: IdpServer) -> None:
    idp = proxied_idp
    known = new_uid("kn")
    idp.directory.create_user(known, PASSWORD)
    unknown = new_uid("unk")
    timings: dict[str, list[float]] = {known: [], unknown: []}
    answers: dict[str, list[tuple[int, str]]] = {known: [], unknown: []}
    for name, address in ((known, "198.51.100.31"), (unknown, "198.51.100.32")):
        session = _from(address)
        for _ in range(15):  # past the pair limit (10): throttled answers for the last five
            started = time.monotonic()
            answers[name].append(_attempt(session, idp, name, "wrong-password-1"))
            timings[name].append(time.monotonic() - started)
        # and the right password now (for the unknown name: any password)
        answers[name].append(_attempt(session, idp, name, PASSWORD))
    assert answers[known] == answers[unknown] == [(401, GENERIC)] * 16
    median = {name: sorted(values)[len(values) // 2] for name, values in timings.items()}
    print(f"median answer: known {median[known] * 1000:.1f} ms, unknown {median[unknown] * 1000:.1f} ms")


def test_the_deployment_takes_the_account_wide_limits_from_its_settings(tmp_path: Path) -> None:
    """TESSERA_THROTTLE_ACCOUNT_WIDE_FAILURES and TESSERA_THROTTLE_USUAL_ADDRESS_DAYS reach the throttle."""
    import datetime

    from store.engine import make_engine
    from store import schema
    from idp.deployment import Deployment

    engine = make_engine(f"sqlite:///{tmp_path / 't.db'}")
    schema.upgrade(engine)
    engine.dispose()
    env = {"TESSERA_HOME": str(tmp_path), "TESSERA_DATABASE_URL": f"sqlite:///{tmp_path / 't.db'}",
           "TESSERA_THROTTLE_ACCOUNT_WIDE_FAILURES": "77", "TESSERA_THROTTLE_USUAL_ADDRESS_DAYS": "30"}
    deployment = Deployment(Settings.from_env(env=env))
    try:
        throttle = deployment.throttle
        assert throttle.account_wide_limit == 77 and throttle.usual_address_age == datetime.timedelta(days=30)
    finally:
        deployment.close()
