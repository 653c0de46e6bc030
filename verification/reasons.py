"""The reason vocabulary of every verdict: a machine ``code`` and a human ``detail``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reason:
    """One reason a certificate, path, record or signature is not valid."""

    code: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "detail": self.detail}
