"""Fixtures of the web tests: `tessera serve` on a `tessera init` home whose directory is the
private slapd of ``tests.fixtures_directory``, and a staff member's browser-less agent.

Import at the top of a test module: ``from tests.fixtures_web import *``.

    idp                 session: the running service (gunicorn, 2 workers), see :class:`IdpServer`
    idp.url(path)       absolute URL
    idp.cli(*args)      run `tessera` on its home (asserts success unless check=False)
    idp.add_client(...) register a client with the CLI; returns its JSON summary (with the secret)
    staff_user          function scope: a fresh directory user (uid, password)
    StaffAgent          requests.Session that logs in with password + TOTP (enrols on first use)
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
import requests

from tests.fixtures_directory import SlapdServer, new_uid, slapd  # noqa: F401  (slapd is a fixture)
from tests.servers import TESSERA, free_port, run_tessera, running_server, tessera_env, wait_healthy

__all__ = ["IdpServer", "StaffAgent", "idp", "staff_user", "slapd", "csrf_of", "new_uid", "TESSERA"]

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "Correct-horse-7-battery"


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


@dataclass
class IdpServer:
    home: Path
    port: int
    directory: SlapdServer
    log: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    @property
    def env(self) -> dict[str, str]:
        return tessera_env(self.home, self.base, **self.directory.env, **self.extra_env)

    def cli(self, *args: str, check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return run_tessera(self.env, *args, check=check, input=input)

    def add_client(self, name: str, redirect_uri: str, *extra: str) -> dict[str, Any]:
        out = self.cli("client", "add", name, "--redirect-uri", redirect_uri, "--json", *extra)
        return json.loads(out.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def idp(slapd: SlapdServer) -> Iterator[IdpServer]:  # noqa: F811
    """`tessera init` + `tessera serve --workers 2` against the slapd fixture; stopped by PID."""
    base = Path(tempfile.mkdtemp(prefix="tessera-idp-"))
    server = IdpServer(base / "home", free_port(), slapd, base / "server.log")
    server.cli("init")
    with running_server([TESSERA, "serve", "--port", str(server.port), "--workers", "2"], server.port, server.log,
                        env=server.env):
        wait_healthy(server.url("/healthz"))
        yield server
    shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def private_idp(prefix: str, env: dict[str, str] | None = None, **slapd_options: Any) -> Iterator[IdpServer]:
    """`tessera init` + `tessera serve --workers 2` on a home and a slapd of their own, for tests
    that change the directory's or the service's settings (``env``); both stopped by PID."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    directory = SlapdServer(base / "d", **slapd_options)
    directory.start()
    server = IdpServer(base / "home", free_port(), directory, base / "server.log", env or {})
    try:
        server.cli("init")
        with running_server([TESSERA, "serve", "--port", str(server.port), "--workers", "2"], server.port, server.log,
                            env=server.env):
            wait_healthy(server.url("/healthz"))
            yield server
    finally:
        directory.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture()
def staff_user(slapd: SlapdServer) -> tuple[str, str]:  # noqa: F811
    uid = new_uid("w")
    slapd.create_user(uid, PASSWORD, department="finance", title="Analyst", groups=("auditors",),
                      given_name="Wendy", surname=f"Web{uid[-4:]}")
    return uid, PASSWORD


def unused_step(last_step: int) -> int:
    """The earliest TOTP step after ``last_step`` that the service accepts now: its window is one step
    either side (RFC 6238 section 5.2), so three steps serve before a wait; the previous step only in
    the first 20 seconds of this one (its code must still be in the window when it arrives)."""
    while True:
        now, into = divmod(time.time(), 30)
        step = max(int(now) - (1 if into < 20 else 0), last_step + 1)
        if step <= int(now) + 1:
            return step
        time.sleep(30 - into + 0.1)


class StaffAgent(requests.Session):
    """A staff member's user agent without a browser: follows the login pages like a person."""

    def __init__(self, idp: IdpServer, uid: str, password: str, secret: str | None = None) -> None:
        super().__init__()
        self.idp = idp
        self.uid = uid
        self.password = password
        self.secret = secret
        self.last_step = -1
        self.headers["Accept-Language"] = "en"  # the tests read English pages; the default is zh-CN

    def code(self) -> str:
        """A TOTP code of a step not used yet (waits for the next step when needed)."""
        assert self.secret
        self.last_step = unused_step(self.last_step)
        return pyotp.TOTP(self.secret).generate_otp(self.last_step)

    def password_step(self, next_path: str = "/account") -> requests.Response:
        page = self.get(self.idp.url("/login"), params={"next": next_path})
        return self.post(self.idp.url("/login"), data={"username": self.uid, "password": self.password,
                                                       "csrf_token": csrf_of(page.text), "next": next_path},
                         allow_redirects=False)

    def login(self, next_path: str = "/account") -> requests.Response:
        """Password, then enrolment (first time) or a code; the response after the last redirect
        that stays on the IdP (the next page is not followed if it leaves the IdP)."""
        return self.finish(self.password_step(next_path), next_path)

    def finish(self, response: requests.Response, next_path: str = "/account") -> requests.Response:
        """The second factor after a successful password step: the code form answered in place, or
        (first login) a redirect to the enrolment."""
        if response.status_code == 200 and 'action="/login/code"' in response.text:
            page = response
            target = "/login/code"
        else:
            assert response.status_code == 302, response.text
            target = response.headers["Location"]
            page = self.get(self.idp.url(target) if target.startswith("/") else target)
        if target.endswith("/login/enrol"):
            match = re.search(r'id="totp-secret">([^<]+)<', page.text)
            assert match, "enrolment page shows no secret"
            self.secret = match.group(1).replace(" ", "")
            done = self.post(self.idp.url("/login/enrol"), data={"code": self.code(), "csrf_token": csrf_of(page.text)},
                             allow_redirects=False)
            assert done.status_code == 302, done.text
            codes_page = self.get(self.idp.url(done.headers["Location"]), allow_redirects=False)
            self.recovery_codes = re.findall(r"<li>([a-z0-9]{5}-[a-z0-9]{5})</li>", codes_page.text)
            return self.get(self.idp.url(next_path), allow_redirects=False)
        done = self.post(self.idp.url("/login/code"), data={"code": self.code(), "csrf_token": csrf_of(page.text)},
                         allow_redirects=False)
        assert done.status_code == 302, done.text
        return done


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


__all__ += ["query_of", "PASSWORD", "unused_step"]


@dataclass
class DemoApp:
    base: str
    client: dict[str, Any]


@contextlib.contextmanager
def running_demo_app(issuer: str, client: dict[str, Any], folder: Path, port: int) -> Iterator[None]:
    """The demo departmental application (python -m demo) as ``client`` of ``issuer`` on ``port``."""
    client_file = folder / "demo-client.json"
    client_file.write_text(json.dumps(client))
    with running_server([sys.executable, "-m", "demo", "--port", str(port), "--issuer", issuer,
                         "--client-file", str(client_file)], port, folder / "demo.log", cwd=REPO, timeout=20):
        yield


@pytest.fixture(scope="session")
def demo_app(idp: IdpServer) -> Iterator[DemoApp]:
    """The demo departmental application registered as an untrusted client (so the consent page
    shows), stopped by PID."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    client = idp.add_client("Travel claims (demo)", base + "/callback", "--post-logout-redirect-uri", base + "/")
    with running_demo_app(idp.base, client, idp.home.parent, port):
        yield DemoApp(base, client)


__all__ += ["DemoApp", "demo_app", "running_demo_app"]


def post_login(session: requests.Session, idp: IdpServer, username: str, password: str) -> requests.Response:
    """The login form's first step (user name and password) with its CSRF token, redirects not followed.
    The session asks for English unless it named a language (tests compare English messages)."""
    session.headers.setdefault("Accept-Language", "en")
    page = session.get(idp.url("/login"))
    return session.post(idp.url("/login"), data={"username": username, "password": password, "csrf_token": csrf_of(page.text)},
                        allow_redirects=False)


__all__ += ["post_login"]
