"""The public URLs written into certificates (AIA, CDP: RFC 5280 sections 4.2.2.1, 4.2.1.13)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class PublicUrls:
    """Every URL is built from one base, ``TESSERA_PUBLIC_URL``."""

    base: str

    def __post_init__(self) -> None:
        parts = urlsplit(self.base)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"public URL {self.base!r} must be http(s)://host[:port][/path]")
        object.__setattr__(self, "base", self.base.rstrip("/"))

    def ocsp(self, authority: str) -> str:
        return f"{self.base}/ocsp/{authority}"

    def crl(self, authority: str) -> str:
        return f"{self.base}/crl/{authority}.crl"

    def ca_issuers(self, authority: str) -> str:
        return f"{self.base}/ca/{authority}.crt"

    def tsa(self) -> str:
        return f"{self.base}/tsa"
