"""Time-based one-time passwords: RFC 6238 over RFC 4226 HOTP.

:class:`TotpVerifier` computes codes (pyotp does the HOTP arithmetic of RFC 4226 section 5.3) and
matches a submitted code within a window of one time step either side (RFC 6238 section 5.2),
returning the step it matched so the caller can refuse a step already used (section 5.2: "the
verifier MUST NOT accept the second attempt of the same OTP").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Callable

import pyotp

_DIGESTS: dict[str, Callable[..., "hashlib._Hash"]] = {
    "SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512,
}


@dataclass(frozen=True)
class TotpParameters:
    """RFC 6238 section 4: X (period), T0, the HMAC algorithm and the number of digits."""

    digits: int = 6
    period: int = 30
    algorithm: str = "SHA1"  # what every authenticator app supports
    t0: int = 0


def new_secret() -> str:
    """A 160-bit shared secret (RFC 4226 section 4 recommends 160 bits), base32 without padding."""
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


class TotpVerifier:
    def __init__(self, parameters: TotpParameters = TotpParameters(), window: int = 1,
                 tuning: Callable[[str], int] | None = None) -> None:
        if parameters.algorithm not in _DIGESTS:
            raise ValueError(f"unsupported TOTP algorithm {parameters.algorithm}")
        self.parameters = parameters
        self._window = window
        #: the runtime settings in force (idp/runtime_settings.py), read on each use; None: fixed
        self._tuning = tuning

    @property
    def window(self) -> int:
        """Time steps accepted either side of now (RFC 6238 section 5.2: at most one is recommended)."""
        return self._tuning("totp.window_steps") if self._tuning else self._window

    def _otp(self, secret_b32: str) -> pyotp.TOTP:
        p = self.parameters
        return pyotp.TOTP(secret_b32, digits=p.digits, digest=_DIGESTS[p.algorithm], interval=p.period)

    def step(self, when: float) -> int:
        """T = floor((unix time - T0) / X), RFC 6238 section 4.2."""
        return int((when - self.parameters.t0) // self.parameters.period)

    def code_at(self, secret_b32: str, when: float) -> str:
        return self.code_for_step(secret_b32, self.step(when))

    def code_for_step(self, secret_b32: str, step: int) -> str:
        return self._otp(secret_b32).generate_otp(step)

    def match(self, secret_b32: str, code: str, when: float, after_step: int = -1) -> int | None:
        """The time step ``code`` belongs to, within +-window of ``when`` and later than
        ``after_step`` (the last step accepted), or None. Constant-time comparison per step."""
        code = code.strip().replace(" ", "")
        if len(code) != self.parameters.digits or not code.isdigit():
            return None
        now = self.step(when)
        otp = self._otp(secret_b32)
        found = None
        for step in range(now - self.window, now + self.window + 1):
            if hmac.compare_digest(otp.generate_otp(step), code) and step > after_step and found is None:
                found = step
        return found

    def provisioning_uri(self, secret_b32: str, account: str, issuer: str) -> str:
        """The otpauth:// URI an authenticator app reads from the QR code (Key Uri Format)."""
        return self._otp(secret_b32).provisioning_uri(name=account, issuer_name=issuer)


def qr_svg(data: str) -> str:
    """The QR code of ``data`` as inline SVG, rendered locally with segno (no outside service)."""
    import segno
    from flask_babel import gettext

    # a viewBox, not a fixed size: the page's stylesheet scales the whole code, quiet zone included
    # (with width and height it cut off the right and bottom edges, and phones could not read it)
    return segno.make(data, error="m").svg_inline(scale=5, dark="#111", light="#fff", omitsize=True,
                                                  title=gettext("QR code for your authenticator app"))
