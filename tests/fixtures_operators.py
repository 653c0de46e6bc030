"""Operators of the command line in tests: staff members who proved both factors with
`tessera admin login` and act `--as` themselves with the token it printed.

    Operator(uid, password, secret)   .code(): a TOTP code of a step not used yet (pyotp)
    enrol(env, uid) -> secret          TOTP enrolled in the home's database, in process (no web login)
    login(env, operator, seconds=...)  `tessera admin login --password-stdin --print-token`: the token
    run_as(env, tokens, *args)         `tessera *args` with the token of the uid after --as in args
    operator_tokens                    session fixture: uid -> token for every one of `admins`
                                       (enrolled by their web login in `admin_agents`)
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import pyotp
import pytest

from tests.fixtures_admin import PASSWORD, AdminAgent, admin_agents, admins, idp, slapd  # noqa: F401
from tests.fixtures_web import unused_step
from tests.servers import run_tessera

__all__ = ["SESSION_SECONDS", "Operator", "enrol", "login", "operator_tokens", "run_as", "token_of"]

#: tokens of the session fixtures outlive a long test session (the default is 15 minutes)
SESSION_SECONDS = 4 * 3600


@dataclass
class Operator:
    uid: str
    password: str
    secret: str
    last_step: int = field(default=-1)

    def code(self) -> str:
        """A code of a step not used yet, inside the window of one (waits when three are used)."""
        self.last_step = unused_step(self.last_step)
        return pyotp.TOTP(self.secret).generate_otp(self.last_step)

    @classmethod
    def of(cls, agent: AdminAgent) -> Operator:
        assert agent.secret, "the agent has not enrolled TOTP"
        return _Shared(agent)


class _Shared(Operator):
    """An operator sharing its TOTP step bookkeeping with a web agent of the same person."""

    def __init__(self, agent: AdminAgent) -> None:
        super().__init__(agent.uid, agent.password, str(agent.secret))
        self.agent = agent

    def code(self) -> str:
        return self.agent.code()


def enrol(env: dict[str, str], uid: str, password: str) -> Operator:
    """Enrol TOTP for ``uid`` in the database of the home ``env`` names (the web login's enrolment,
    done in process with the previous step's code so the login can use this step's)."""
    from idp.deployment import Deployment
    from idp.settings import Settings

    deployment = Deployment(Settings.from_env(env=env))
    try:
        factor = deployment.second_factor
        enrolment = factor.begin_enrolment(uid)
        previous = int(time.time() // 30) - 1
        assert factor.confirm_enrolment(uid, pyotp.TOTP(enrolment.secret).generate_otp(previous)) is not None
    finally:
        deployment.close()
    return Operator(uid, password, enrolment.secret, previous)


def login(env: dict[str, str], operator: Operator, seconds: int | None = SESSION_SECONDS,
          code: str | None = None) -> subprocess.CompletedProcess[bytes]:
    """`tessera admin login --as UID --password-stdin --print-token` (password and code on stdin)."""
    extra = {"TESSERA_OPERATOR_TOKEN_SECONDS": str(seconds)} if seconds else {}
    secrets = f"{operator.password}\n{code if code is not None else operator.code()}\n".encode()
    return run_tessera(env | extra, "admin", "login", "--as", operator.uid, "--password-stdin", "--print-token",
                       check=False, input=secrets)


def token_of(env: dict[str, str], operator: Operator, seconds: int | None = SESSION_SECONDS) -> str:
    done = login(env, operator, seconds)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode().strip()


def run_as(target: Any, tokens: dict[str, str], *args: str, check: bool = True,
           input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run `tessera *args` on ``target`` (a server, a home or an environment) presenting the token of
    the staff member named after ``--as`` in ``args`` (none if that person has no token)."""
    env = target if isinstance(target, dict) else target.env
    uid = args[list(args).index("--as") + 1]
    token = tokens.get(uid)
    return run_tessera(env | ({"TESSERA_OPERATOR_TOKEN": token} if token else {}), *args, check=check, input=input)


@pytest.fixture(scope="session")
def operator_tokens(idp, admin_agents: dict[str, AdminAgent]) -> dict[str, str]:  # type: ignore[no-untyped-def]  # noqa: F811
    """uid -> a live operator token for each administrator of ``admins`` on the ``idp`` server."""
    return {agent.uid: token_of(idp.env, Operator.of(agent)) for agent in admin_agents.values()}
