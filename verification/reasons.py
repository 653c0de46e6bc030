"""The reason vocabulary of every verdict (a machine ``code`` and a human ``detail``), and the
card reader's per-check outcome."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reason:
    """One reason a certificate, path, record or signature is not valid."""

    code: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "detail": self.detail}


@dataclass(frozen=True)
class Check:
    """One check's outcome, as the card reader reports each: ``ok``, and a short machine ``reason``
    with a human ``detail``."""

    name: str
    ok: bool
    reason: str = "ok"
    detail: str = ""
    #: not performed (e.g. private records without the PIN); neither passes nor fails
    skipped: bool = False

    @property
    def outcome(self) -> str:
        return "skipped" if self.skipped else ("pass" if self.ok else "fail")

    def as_dict(self) -> dict[str, str]:
        return {"check": self.name, "outcome": self.outcome, "reason": self.reason, "detail": self.detail}
