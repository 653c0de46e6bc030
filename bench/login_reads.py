"""Where a staff login's service CPU goes, statement by statement, measured in process.

No HTTP server and no load generator share the cores with what is measured: the Flask application
answers through its test client (``app.test_client()``), so the CPU counted is the service's own
(plus the test client's, the same in every run). One run:
  1. a private slapd with N generated staff and a Tessera home as bench/sso_logins.py prepares them
     (`tessera init`, a trusted client, every staff member's TOTP enrolled);
  2. one uncounted warm-up round, then ``--rounds`` rounds of ``--logins`` complete logins (GET
     /oidc/authorize, POST /login, POST /login/code, POST /oidc/token), each round after the staff's
     TOTP steps were set back (a code is accepted once per step). Counted per round: the CPU time of
     the thread answering (``time.thread_time``: the time-based audit checkpoint thread is left
     out), and per call of the login's store methods (inclusive: a method's time includes the
     statements it runs); the statements that went through SQLAlchemy's engine, by their SQL;
  3. with ``--compare``: the rounds alternate between the reads on the driver as shipped
     (``store.driver_read.DriverRead``) and the same selects through SQLAlchemy Core
     (``engine.connect()``, ``execute``, ``first()``: the code they replaced), in one process on
     one home, so the machine's changing load hits both alike;
  4. with ``--reads``: each hot read alone on the same home, Core against DriverRead, ``--calls``
     calls each, alternating for ``--rounds`` rounds.

Shown: medians of the rounds, CPU ms per login and per store method CPU µs per call; the load
average before and after (the machine is shared).

    .venv/bin/python bench/login_reads.py [--staff 1500] [--logins 300] [--rounds 5] [--compare] [--reads] [--keep DIR]
"""

from __future__ import annotations

import argparse
import base64
import collections
import functools
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import table  # noqa: E402
from sso_logins import REDIRECT, authorization_request, prepare_home, totp_secret  # noqa: E402
from sso_raw_ldap import staff_directory  # noqa: E402
from tests.servers import free_port  # noqa: E402

import pyotp  # noqa: E402

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')

#: what a login calls, by module and class ("": the module's own functions); inclusive CPU is
#: counted per call. The store methods, and the other pieces docs/sso.md ("Where it went") weighs.
MEASURED = {
    "idp.sessions": {"SessionStore": ["load", "save", "touch", "delete"]},
    "idp.throttle": {"LoginThrottle": ["blocked", "success"]},
    "idp.second_factor": {"SecondFactor": ["remember", "verify", "claims", "_account_row"]},
    "idp.oidc.grants": {"AuthorizationCodes": ["save", "spend", "find", "nonce_seen"]},
    "idp.oidc.tokens": {"TokenStore": ["save"]},
    "idp.oidc.clients": {"ClientRegistry": ["get"]},
    "audit.trail": {"AuditTrail": ["record"]},
    "directory.client": {"Directory": ["authenticate"]},
    "idp.events": {"": ["record"]},
    "idp.i18n": {"": ["select_locale", "_after"]},
    "jinja2.environment": {"Template": ["render"]},
    "authlib.oauth2.rfc6749.authorization_server": {"AuthorizationServer": ["create_authorization_response",
                                                                             "create_token_response"]},
}


class Counter:
    """CPU seconds and calls per (mode, measured method), and statements per SQL text."""

    def __init__(self) -> None:
        self.cpu: dict[tuple[str, str], float] = collections.defaultdict(float)
        self.calls: dict[tuple[str, str], int] = collections.defaultdict(int)
        self.statements: dict[str, int] = collections.defaultdict(int)
        #: the mode of the round counted now; None: not counting
        self.mode: str | None = None


COUNTER = Counter()
#: the two ways of running the login's hot reads (--compare)
DRIVER, CORE = "DriverRead", "Core"


def instrument() -> None:
    """Wrap every method of :data:`MEASURED` so that its calls and CPU time are counted."""
    import importlib

    from store.driver_read import DriverRead

    made = DriverRead.__init__

    def keeping_the_statement(self: Any, engine: Any, statement: Any) -> None:
        made(self, engine, statement)
        self.bench_statement = statement

    DriverRead.__init__ = keeping_the_statement  # type: ignore[method-assign]
    for module_name, classes in MEASURED.items():
        module = importlib.import_module(module_name)
        for class_name, methods in classes.items():
            owner = getattr(module, class_name) if class_name else module
            for method in methods:
                name = f"{class_name}.{method}" if class_name else f"{module_name}.{method}"
                setattr(owner, method, _timed(name, getattr(owner, method)))


def _timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        mode = COUNTER.mode
        if mode is None:
            return function(*args, **kwargs)
        started = time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            COUNTER.cpu[mode, name] += time.thread_time() - started
            COUNTER.calls[mode, name] += 1
    return timed


def count_statements(engine: Any) -> None:
    from sqlalchemy import event

    @event.listens_for(engine, "before_cursor_execute")
    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if COUNTER.mode == DRIVER:
            COUNTER.statements[" ".join(statement.split())[:90]] += 1


def one_login(app: Any, uid: str, password: str, client: dict[str, str], step: int) -> None:
    """The four requests of bench/sso_logins.py's browser-shaped login, through the test client."""
    verifier, authorize = authorization_request(client["client_id"])
    browser = app.test_client()
    page = browser.get(authorize)
    assert page.status_code == 200, page.status_code
    page = browser.post("/login", data={"username": uid, "password": password, "next": authorize,
                                        "csrf_token": _CSRF.search(page.get_data(as_text=True)).group(1)})  # type: ignore[union-attr]
    assert page.status_code == 200 and 'name="code"' in page.get_data(as_text=True), page.status_code
    done = browser.post("/login/code", data={"code": pyotp.TOTP(totp_secret(uid)).generate_otp(step),
                                             "csrf_token": _CSRF.search(page.get_data(as_text=True)).group(1)})  # type: ignore[union-attr]
    assert done.status_code == 302 and done.headers["Location"].startswith(REDIRECT + "?code="), done.status_code
    code = re.search(r"code=([^&]+)", done.headers["Location"]).group(1)  # type: ignore[union-attr]
    basic = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
    token = app.test_client().post("/oidc/token", data={"grant_type": "authorization_code", "code": code,
                                                        "redirect_uri": REDIRECT, "code_verifier": verifier},
                                   headers={"Authorization": f"Basic {basic}"})
    assert token.status_code == 200 and token.get_json()["id_token"], token.status_code


@contextmanager
def application(env: dict[str, str]) -> Iterator[Any]:
    from idp.app import create_app
    from idp.settings import Settings

    os.environ.update(env)  # the directory settings are read from the environment
    app = create_app(Settings.from_env(env["TESSERA_HOME"], env))
    try:
        yield app
    finally:
        app.extensions["tessera"].close()


@contextmanager
def reads_through(mode: str) -> Iterator[None]:
    """In ``CORE`` mode every DriverRead runs its select as the code it replaced did: through the engine."""
    from store.driver_read import DriverRead

    if mode == DRIVER:
        yield
        return
    on_the_driver = DriverRead.first

    def through_core(self: Any, params: Any) -> Any:
        with self._engine.connect() as conn:
            return conn.execute(self.bench_statement, params).first()

    DriverRead.first = through_core  # type: ignore[method-assign]
    try:
        yield
    finally:
        DriverRead.first = on_the_driver  # type: ignore[method-assign]


def login_rounds(app: Any, staff: Any, client: dict[str, str], logins: int, rounds: int,
                 modes: tuple[str, ...]) -> dict[str, list[float]]:
    """CPU ms per login of each round, by mode (alternating), after one uncounted warm-up round of the
    same staff (their first login from this address writes the throttle's usual-address row)."""
    from sqlalchemy import update

    from idp.models import StaffAccount

    deployment = app.extensions["tessera"]
    count_statements(deployment.engine)
    uids = [staff.uid(n) for n in range(1, min(logins, staff.count) + 1)]
    per_login: dict[str, list[float]] = {mode: [] for mode in modes}
    schedule = [(None, modes[0])] + [(mode, mode) for number in range(rounds)
                                     for mode in (modes if number % 2 == 0 else modes[::-1])]
    for counted, mode in schedule:
        with deployment.engine.begin() as conn:  # a code is accepted once per step: set the steps back
            conn.execute(update(StaffAccount).values(totp_last_step=0))
        step = int(time.time() // 30)
        with reads_through(mode):
            COUNTER.mode = counted
            started = time.thread_time()
            for uid in uids:
                one_login(app, uid, staff.password, client, step)
            spent = time.thread_time() - started
            COUNTER.mode = None
        if counted is not None:
            per_login[counted].append(spent * 1000 / len(uids))
    return per_login


def read_rounds(app: Any, staff: Any, calls: int, rounds: int) -> list[list[object]]:
    """Each hot read through Core and through DriverRead, alternated: [read, Core µs, DriverRead µs, gain µs]."""
    from store.driver_read import DriverRead

    from idp import second_factor, sessions, throttle
    from idp.oidc import grants

    deployment = app.extensions["tessera"]
    engine = deployment.engine
    now = deployment.now()
    uid = staff.uid(1)
    with engine.connect() as conn:
        session_key = conn.exec_driver_sql("SELECT id_hash FROM idp_web_session LIMIT 1").scalar()
        code_hash, client_id = conn.exec_driver_sql(
            "SELECT code_hash, client_id FROM idp_authorization_code LIMIT 1").one()
    keys = dict(zip(("pair", "account", "source", "usual"), throttle.LoginThrottle._keys(uid, "127.0.0.1"),
                    strict=True))
    reads = [
        ("session load", sessions._LOAD, {"key": session_key}),
        ("throttle check", throttle._BLOCKED, {**keys, "now": now, "since": now}),
        ("throttle after login", throttle._AFTER_LOGIN, {"pair": keys["pair"], "usual": keys["usual"]}),
        ("second-factor state", second_factor._ACCOUNT, {"account": uid}),
        ("nonce seen", grants._NONCE_SEEN, {"client": client_id, "nonce": "never-used"}),
        ("code found (reuse)", grants._FIND_CODE, {"h": code_hash}),
    ]
    rows = []
    for name, statement, params in reads:
        driver = DriverRead(engine, statement)

        def core(statement: Any = statement, params: dict[str, Any] = params) -> None:
            with engine.connect() as conn:
                conn.execute(statement, params).first()

        def direct(driver: DriverRead = driver, params: dict[str, Any] = params) -> None:
            driver.first(params)

        assert_same(engine, statement, params, driver)
        times: dict[str, list[float]] = {"core": [], "driver": []}
        for number in range(rounds):
            order = (("core", core), ("driver", direct)) if number % 2 == 0 else (("driver", direct), ("core", core))
            for label, run in order:
                run()
                started = time.thread_time()
                for _ in range(calls):
                    run()
                times[label].append((time.thread_time() - started) * 1e6 / calls)
        old, new = statistics.median(times["core"]), statistics.median(times["driver"])
        rows.append([name, old, new, old - new, f"{min(times['core']):.0f}-{max(times['core']):.0f}",
                     f"{min(times['driver']):.0f}-{max(times['driver']):.0f}"])
    return rows


def assert_same(engine: Any, statement: Any, params: dict[str, Any], driver: Any) -> None:
    with engine.connect() as conn:
        expected = conn.execute(statement, params).first()
    got = driver.first(params)
    assert (None if expected is None else tuple(expected)) == (None if got is None else tuple(got)), (expected, got)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--staff", type=int, default=1500, help="generated staff in the directory")
    parser.add_argument("--logins", type=int, default=300, help="logins per round")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (medians are shown)")
    parser.add_argument("--compare", action="store_true",
                        help="alternate rounds with the reads on the driver and through Core")
    parser.add_argument("--reads", action="store_true", help="also each hot read alone, Core against DriverRead")
    parser.add_argument("--calls", type=int, default=3000, help="calls per read and round with --reads")
    parser.add_argument("--keep", type=Path, default=None, help="build the directory here and reuse it next time")
    args = parser.parse_args()
    if not 100 <= args.staff <= 100_000 or not 10 <= args.logins <= args.staff or not 1 <= args.rounds <= 15:
        parser.error("--staff 100..100,000, --logins 10..staff, --rounds 1..15")
    modes = (CORE, DRIVER) if args.compare else (DRIVER,)
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    base = Path(tempfile.mkdtemp(prefix="tessera-bench-reads-"))
    instrument()
    try:
        with staff_directory(args.staff, args.keep) as staff:
            env, client = prepare_home(staff, base, free_port())
            with application(env) as app:
                per_login = login_rounds(app, staff, client, args.logins, args.rounds, modes)
                reads = read_rounds(app, staff, args.calls, args.rounds) if args.reads else []
    finally:
        shutil.rmtree(base, ignore_errors=True)
    load_after = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    logins = args.logins * args.rounds
    medians = {mode: statistics.median(per_login[mode]) for mode in modes}
    rows: list[list[object]] = [["whole login (4 requests, test client)", 1.0]
                                + [medians[mode] * 1000 for mode in modes]
                                + [", ".join(f"{x:.2f}" for x in per_login[mode]) for mode in modes]]
    names = {name for _, name in COUNTER.cpu}
    for name in sorted(names, key=lambda n: -COUNTER.cpu[modes[-1], n]):
        rows.append([name, COUNTER.calls[modes[-1], name] / logins]
                    + [COUNTER.cpu[mode, name] * 1e6 / max(COUNTER.calls[mode, name], 1) for mode in modes]
                    + ["" for _ in modes])
    print(table(f"In-process staff logins ({Path(sys.modules['idp'].__file__ or '').parent.parent}): CPU of the "
                f"answering thread, medians of {args.rounds} rounds of {args.logins} logins"
                f"{' alternating ' + ' / '.join(modes) if args.compare else ''}; load average before {load_before}, "
                f"after {load_after}",
                ["what", "calls per login"] + [f"CPU µs per call, {mode}" for mode in modes]
                + [f"ms per login by round, {mode}" for mode in modes], rows))
    print(table("Statements through the engine per login (reads on the driver)", ["SQL", "per login"],
                [[sql, n / logins] for sql, n in sorted(COUNTER.statements.items(), key=lambda kv: -kv[1])]))
    if reads:
        print(table(f"Each read alone: CPU µs per call, medians of {args.rounds} alternating rounds of {args.calls}",
                    ["read", "Core", "DriverRead", "gain", "Core range", "DriverRead range"], reads))


if __name__ == "__main__":
    main()
