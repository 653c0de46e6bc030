"""Foreign trust anchors: the trust list file (``TESSERA_TRUST_LIST``, TOML) read at start, and
how revocation of a foreign path is learnt (RFC 5280 section 4.2.1.13 CRL distribution points,
fetched over HTTP and kept until their nextUpdate; RFC 6960 OCSP at the AIA's responder).

The file::

    [[anchor]]
    name = "Province of Northland"          # shown in every verdict about its certificates
    certificate = "northland-root.pem"      # PEM or DER; relative to the list's own directory
    purposes = ["signing", "citizen-auth"]  # what its certificates may be valid for
    policies = ["1.2.3.4.1"]                # user-initial-policy-set, explicit (section 6.1.1);
                                            # empty: any policy, none required
    revocation = "crl"                      # "crl" (CDPs of each path certificate) or "ocsp"
    timeout = 5                             # seconds per fetch
    fail_open = false                       # true: no reachable status is no reason to refuse
"""

from __future__ import annotations

import datetime
import threading
import tomllib
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

REVOCATION_METHODS = ("crl", "ocsp")


class TrustListError(ValueError):
    """The trust list cannot be read, or names something unknown."""
#: the largest CRL fetched (bytes); a larger answer is no CRL
MAX_CRL = 8 * 1024 * 1024


@dataclass(frozen=True)
class ForeignAnchor:
    """One foreign CA trusted as an anchor, with what it is trusted for."""

    name: str
    certificate: x509.Certificate
    purposes: frozenset[str]
    policies: frozenset[str]
    revocation: str = "crl"
    timeout: float = 5.0
    fail_open: bool = False

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(Encoding.DER)


def _certificate(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    return x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)


def load_trust_list(path: str | Path, known_purposes: tuple[str, ...]) -> list[ForeignAnchor]:
    """The anchors of the trust list at ``path``; a list that does not read is a TrustListError
    (the service refuses to start rather than trust less or more than it was told)."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
        anchors = []
        for i, entry in enumerate(document.get("anchor", [])):
            where = f"{path}: anchor {i + 1}"
            purposes = frozenset(entry.get("purposes", []))
            if not purposes or not purposes <= set(known_purposes):
                raise TrustListError(f"{where}: purposes must be some of {', '.join(known_purposes)}")
            revocation = entry.get("revocation", "crl")
            if revocation not in REVOCATION_METHODS:
                raise TrustListError(f"{where}: revocation must be one of {', '.join(REVOCATION_METHODS)}")
            policies = frozenset(str(x509.ObjectIdentifier(p).dotted_string) for p in entry.get("policies", []))
            anchors.append(ForeignAnchor(str(entry["name"]), _certificate(path.parent / entry["certificate"]),
                                         purposes, policies, revocation, float(entry.get("timeout", 5)),
                                         bool(entry.get("fail_open", False))))
    except (OSError, ValueError, KeyError, TypeError, tomllib.TOMLDecodeError) as exc:
        raise TrustListError(f"TESSERA_TRUST_LIST {path}: {exc}") from None
    return anchors


class CrlCache:
    """CRLs fetched from distribution points, each kept until its nextUpdate (RFC 5280 section
    5.1.2.5); a fetch that fails or times out yields nothing (the validation then fails closed)."""

    def __init__(self) -> None:
        self._crls: dict[str, tuple[datetime.datetime, bytes]] = {}
        self._lock = threading.Lock()

    def get(self, url: str, at: datetime.datetime, timeout: float) -> bytes | None:
        with self._lock:
            cached = self._crls.get(url)
        if cached is not None and at < cached[0]:
            return cached[1]
        try:
            with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 (http(s) only, below)
                der = answer.read(MAX_CRL + 1)
            if len(der) > MAX_CRL:
                return None
            crl = x509.load_der_x509_crl(der)
        except (OSError, ValueError):
            return None
        until = crl.next_update_utc or at
        with self._lock:
            if len(self._crls) > 1000:
                self._crls.clear()
            self._crls[url] = (until, der)
        return der

    @staticmethod
    def points(cert: x509.Certificate) -> list[str]:
        """The http(s) URIs of ``cert``'s cRLDistributionPoints (section 4.2.1.13)."""
        try:
            value = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        except x509.ExtensionNotFound:
            return []
        return [name.value for point in value for name in point.full_name or []
                if isinstance(name, x509.UniformResourceIdentifier) and name.value.startswith(("http://", "https://"))]
