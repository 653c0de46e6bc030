"""TOTP (RFC 6238): the published test vectors, the window of one step, replay refused, recovery
codes single-use and hashed, secrets sealed at rest."""

from __future__ import annotations

import datetime
import os

import pytest
from sqlalchemy import select

from store.engine import make_engine, make_session_factory
from store import schema
from idp.models import RecoveryCode, StaffAccount
from idp.second_factor import SecondFactor
from idp.secretbox import SealedValueInvalid, SecretBox
from idp.totp import TotpParameters, TotpVerifier

import base64

SEEDS = {
    "SHA1": b"12345678901234567890",
    "SHA256": b"12345678901234567890123456789012",
    "SHA512": b"1234567890123456789012345678901234567890123456789012345678901234",
}
# RFC 6238 Appendix B
VECTORS = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


@pytest.mark.parametrize("when,sha1,sha256,sha512", VECTORS)
def test_rfc6238_appendix_b_vectors(when: int, sha1: str, sha256: str, sha512: str) -> None:
    for algorithm, expected in (("SHA1", sha1), ("SHA256", sha256), ("SHA512", sha512)):
        verifier = TotpVerifier(TotpParameters(digits=8, algorithm=algorithm))
        secret = base64.b32encode(SEEDS[algorithm]).decode()
        assert verifier.code_at(secret, when) == expected, (algorithm, when)
        assert verifier.match(secret, expected, when) == when // 30


def test_window_is_one_step_either_side() -> None:
    verifier = TotpVerifier()
    secret = base64.b32encode(SEEDS["SHA1"]).decode()
    now = 1_700_000_000.0
    step = verifier.step(now)
    for offset in (-1, 0, 1):
        assert verifier.match(secret, verifier.code_for_step(secret, step + offset), now) == step + offset
    for offset in (-2, 2, 5):
        assert verifier.match(secret, verifier.code_for_step(secret, step + offset), now) is None
    assert verifier.match(secret, "12345", now) is None
    assert verifier.match(secret, "abcdef", now) is None
    # a step at or before the last accepted one is refused
    assert verifier.match(secret, verifier.code_for_step(secret, step), now, after_step=step) is None


class Clock:
    def __init__(self) -> None:
        self.now = datetime.datetime(2026, 11, 25, 9, 0, 0, tzinfo=datetime.timezone.utc)

    def __call__(self) -> datetime.datetime:
        return self.now


@pytest.fixture()
def factor(tmp_path):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'totp.db'}")
    schema.upgrade(engine)
    clock = Clock()
    sessions = make_session_factory(engine)
    yield SecondFactor(sessions, SecretBox(os.urandom(32)), clock), clock, sessions
    engine.dispose()


def test_enrolment_replay_and_recovery_codes(factor) -> None:  # type: ignore[no-untyped-def]
    second, clock, sessions = factor
    second.remember("alice", {"sub": "alice"})
    assert not second.is_enrolled("alice")
    enrolment = second.begin_enrolment("alice")
    assert enrolment.secret == second.begin_enrolment("alice").secret  # same secret on reload
    assert enrolment.uri.startswith("otpauth://totp/") and "secret=" + enrolment.secret in enrolment.uri
    v = second.verifier
    assert second.confirm_enrolment("alice", "000000" if v.code_at(enrolment.secret, clock.now.timestamp()) != "000000" else "111111") is None
    code = v.code_at(enrolment.secret, clock.now.timestamp())
    recovery = second.confirm_enrolment("alice", code)
    assert recovery is not None and len(recovery) == 10 and len(set(recovery)) == 10
    # the enrolment code itself cannot log in again (same step)
    assert second.verify("alice", code) is None
    clock.now += datetime.timedelta(seconds=30)
    fresh = v.code_at(enrolment.secret, clock.now.timestamp())
    assert second.verify("alice", fresh) == "otp"
    assert second.verify("alice", fresh) is None  # replay refused
    # the previous step's code is inside the window but older than the last accepted: refused
    assert second.verify("alice", v.code_at(enrolment.secret, clock.now.timestamp() - 30)) is None
    clock.now += datetime.timedelta(seconds=30)
    assert second.verify("alice", v.code_at(enrolment.secret, clock.now.timestamp() + 30)) == "otp"  # next step: ok

    # recovery codes: each works once, stored only as hashes
    assert second.verify("alice", recovery[0]) == "recovery"
    assert second.verify("alice", recovery[0]) is None
    assert second.verify("alice", recovery[1].upper().replace("-", " ")) == "recovery"
    assert second.recovery_codes_left("alice") == 8
    assert second.verify("alice", "zzzzz-zzzzz") is None
    with sessions() as s:
        hashes = [r.code_hash for r in s.scalars(select(RecoveryCode))]
        account = s.get(StaffAccount, "alice")
        sealed = account.totp_secret_sealed
    assert all(h.startswith("$argon2") for h in hashes)
    assert not any(code.replace("-", "") in h for code in recovery for h in hashes)
    # the secret is sealed: neither its base32 nor its bytes are in the row
    assert enrolment.secret.encode() not in sealed
    assert base64.b32decode(enrolment.secret + "=" * (-len(enrolment.secret) % 8)) not in sealed


def test_sealed_secret_needs_the_key_and_purpose() -> None:
    box = SecretBox(os.urandom(32))
    sealed = box.seal(b"JBSWY3DPEHPK3PXP", "totp-secret")
    assert box.open(sealed, "totp-secret") == b"JBSWY3DPEHPK3PXP"
    with pytest.raises(SealedValueInvalid):
        box.open(sealed, "oidc-signing-key")
    with pytest.raises(SealedValueInvalid):
        SecretBox(os.urandom(32)).open(sealed, "totp-secret")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SealedValueInvalid):
        box.open(tampered, "totp-secret")
