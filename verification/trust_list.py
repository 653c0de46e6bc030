"""Foreign trust anchors: the trust list file (``TESSERA_TRUST_LIST``, TOML) read at start, and
how revocation of a foreign path is learnt: CRLs from local files (RFC 5280 section 5, as a
directory would serve them), RFC 5280 section 4.2.1.13 CRL distribution points fetched over HTTP
and kept until their nextUpdate, or RFC 6960 OCSP at the AIA's responder.

The file::

    [[anchor]]
    name = "Province of Northland"          # shown in every verdict about its certificates
    certificate = "northland-root.pem"      # PEM or DER; relative to the list's own directory
    purposes = ["signing", "citizen-auth"]  # what its certificates may be valid for
    policies = ["1.2.3.4.1"]                # user-initial-policy-set, explicit (section 6.1.1);
                                            # empty: any policy, none required
    revocation = "crl"                      # "crl" (CDPs of each path certificate) or "ocsp"
    crls = ["northland-crls/"]              # CRL files or folders (DER or PEM), relative to the
                                            # list's directory (or absolute); read at start; optional
    timeout = 5                             # seconds per fetch
    fail_open = false                       # true: no reachable status is no reason to refuse

**Local CRLs** (``crls``) are a revocation source beside the distribution points (``crl``) or
OCSP (``ocsp``): every CRL of the named files and folders (each file DER, or PEM with one or more
``X509 CRL`` blocks; a folder's files, not its subfolders) is read when the list is loaded (a file
that is no CRL stops the service, like the rest of the list) and indexed by its issuer's name
(RFC 5280 section 7.1 comparison). A validation gets the CRLs issued by the issuer of each
certificate of its path and by each cRLIssuer their distribution points name (section 4.2.1.13:
indirect CRLs), so delta CRLs, CRLs of separate signing keys and indirect CRLs reach
pyhanko-certvalidator as they would from a directory. They are not re-read while the service runs:
replace the files and restart; a CRL past its nextUpdate is no status (fail closed).

**Policies**: an anchor's ``policies`` bound what a caller may ask (:meth:`ForeignAnchor.policy_inputs`).
"""

from __future__ import annotations

import datetime
import http.client
import threading
import time
import tomllib
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from verification.paths import UNPARSEABLE, ANY_POLICY, PolicyInputs
from verification.signatures import directly_issued_by

REVOCATION_METHODS = ("crl", "ocsp")
#: the largest CRL fetched or read from a file (bytes); a larger one is no CRL
MAX_CRL = 8 * 1024 * 1024
#: distribution points fetched for one path: the first two of each certificate, eight in all (the
#: certificates are the caller's and not yet validated: each point is a fetch this service makes)
MAX_POINTS_PER_CERTIFICATE = 2
MAX_POINTS = 8


class TrustListError(ValueError):
    """The trust list cannot be read, or names something unknown."""


def _name_key(der: bytes) -> str:
    """A name's RFC 5280 section 7.1 comparison form (asn1crypto's, as pyhanko-certvalidator compares)."""
    return str(asn1_x509.Name.load(der).hashable)


@dataclass(frozen=True, eq=False)
class LocalCrls:
    """CRLs read from files, indexed by their issuer's name (the module's docstring)."""

    by_issuer: dict[str, tuple[bytes, ...]] = field(default_factory=dict)

    @classmethod
    def read(cls, paths: Iterable[Path]) -> "LocalCrls":
        """Every CRL of ``paths`` (files, or folders whose files are read); raises ValueError
        naming the file that holds no CRL, OSError for one that cannot be read."""
        index: dict[str, list[bytes]] = {}
        for path in paths:
            for file in sorted(f for f in path.iterdir() if f.is_file()) if path.is_dir() else [path]:
                data = file.read_bytes()
                if len(data) > MAX_CRL:
                    raise ValueError(f"{file}: larger than {MAX_CRL} bytes")
                try:
                    ders = ([der for kind, _, der in pem.unarmor(data, multiple=True) if kind == "X509 CRL"]
                            if pem.detect(data) else [data])
                    crls = [x509.load_der_x509_crl(der) for der in ders]
                    if not crls:
                        raise ValueError("no X509 CRL block")
                except ValueError as exc:
                    raise ValueError(f"{file}: not a CRL ({exc})") from None
                for crl in crls:
                    index.setdefault(_name_key(crl.issuer.public_bytes()), []).append(crl.public_bytes(Encoding.DER))
        return cls({name: tuple(ders) for name, ders in index.items()})

    def for_path(self, certs: Sequence[x509.Certificate]) -> list[bytes]:
        """The CRLs that can speak for ``certs``: issued by the issuer of one of them, or by a
        cRLIssuer one of their distribution points names (RFC 5280 section 4.2.1.13)."""
        if not self.by_issuer:
            return []
        names = set()
        for cert in certs:
            try:
                names.add(_name_key(cert.issuer.public_bytes()))
                points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
                names.update(_name_key(general.value.public_bytes()) for point in points
                             for general in point.crl_issuer or [] if isinstance(general, x509.DirectoryName))
            except x509.ExtensionNotFound:
                continue
            except UNPARSEABLE:
                continue  # a part that does not parse: the path validation names it (verification.paths)
        return [der for name in sorted(names) for der in self.by_issuer.get(name, ())]

    def __len__(self) -> int:
        return sum(len(ders) for ders in self.by_issuer.values())


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
    #: CRLs from local files (``crls`` in the list), beside the distribution points or OCSP
    crls: LocalCrls = field(default_factory=LocalCrls)

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(Encoding.DER)

    def policy_inputs(self, caller: PolicyInputs | None = None) -> PolicyInputs:
        """The RFC 5280 section 6.1.1 initial inputs for a path to this anchor: the caller's
        within the anchor's. The anchor's ``policies`` are the outer bound: with them the
        user-initial-policy-set is the caller's set intersected with them (theirs when the caller
        names none; empty when none is shared, so no path is valid) and initial-explicit-policy is
        set; each inhibit flag is set when either sets it. Without them the caller's inputs
        (default: any policy, nothing explicit or inhibited) apply as given."""
        caller = caller or PolicyInputs()
        if not self.policies:
            return caller
        wanted = self.policies if ANY_POLICY in caller.initial_policy_set else self.policies & caller.initial_policy_set
        return PolicyInputs(frozenset(wanted), True, caller.initial_policy_mapping_inhibit,
                            caller.initial_any_policy_inhibit)

    def signed_under(self, certs: Sequence[x509.Certificate]) -> list[x509.Certificate]:
        """Those of ``certs`` whose signature verifies with the anchor's key or with the key of one
        of them that does, down from the anchor (:func:`verification.signatures.directly_issued_by`,
        SM2 too): only their distribution points are worth a fetch (anyone can write any URI into a
        certificate of their own; a certificate the anchor's hierarchy signed names the CA's own)."""
        reached, issuers = [], [self.certificate]
        left = list(dict.fromkeys(certs))
        while issuers:
            issuer = issuers.pop()
            for cert in [c for c in left if c.issuer == issuer.subject and directly_issued_by(c, issuer)]:
                left.remove(cert)
                reached.append(cert)
                issuers.append(cert)
        return reached

    def revocation_crls(self, certs: Sequence[x509.Certificate], at: datetime.datetime,
                        cache: "CrlCache") -> tuple[list[bytes], str]:
        """The CRLs for a path of ``certs`` (end entity first): the local ones that can speak for
        them, then, with ``revocation = "crl"``, those of their distribution points (through
        ``cache``); and the words for the verdict's revocation detail."""
        crls = self.crls.for_path(certs)
        local = len(crls)
        words = [f"{local} local CRL{'s' if local != 1 else ''}"] if self.crls else []
        if self.revocation == "crl":
            signed = self.signed_under(certs)
            urls = list(dict.fromkeys(u for c in signed for u in CrlCache.points(c)[:MAX_POINTS_PER_CERTIFICATE]))
            deadline = time.monotonic() + self.timeout  # all of them within the anchor's timeout
            fetched = [der for url in urls[:MAX_POINTS] if (der := cache.get(url, at, deadline)) is not None]
            crls += fetched
            words.append(f"{len(fetched)} CRL{'s' if len(fetched) != 1 else ''} fetched")
        return crls, f"{self.revocation} ({', '.join(words)})" if words else self.revocation


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
            files = entry.get("crls", [])
            if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
                raise TrustListError(f"{where}: crls must be a list of file or folder names")
            anchors.append(ForeignAnchor(str(entry["name"]), _certificate(path.parent / entry["certificate"]),
                                         purposes, policies, revocation, float(entry.get("timeout", 5)),
                                         bool(entry.get("fail_open", False)),
                                         LocalCrls.read(path.parent / f for f in files)))
    except (OSError, ValueError, KeyError, TypeError, tomllib.TOMLDecodeError, x509.InvalidVersion) as exc:
        raise TrustListError(f"TESSERA_TRUST_LIST {path}: {exc}") from None
    return anchors


class CrlCache:
    """CRLs fetched from distribution points, each kept until its nextUpdate (RFC 5280 section
    5.1.2.5); a fetch that fails or times out yields nothing (the validation then fails closed)."""

    def __init__(self) -> None:
        self._crls: dict[str, tuple[datetime.datetime, bytes]] = {}
        self._lock = threading.Lock()

    def get(self, url: str, at: datetime.datetime, deadline: float) -> bytes | None:
        """The CRL at ``url`` (from the cache while current), fetched whole before ``deadline``
        (``time.monotonic``); None when it is not there by then, too large or no CRL."""
        with self._lock:
            cached = self._crls.get(url)
        if cached is not None and at < cached[0]:
            return cached[1]
        try:
            der = _fetch(url, deadline)
            if der is None:
                return None
            crl = x509.load_der_x509_crl(der)
        except (OSError, ValueError, http.client.HTTPException):  # the last: a URL or an answer http.client refuses
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


def _fetch(url: str, deadline: float) -> bytes | None:
    """``url``'s body, at most :data:`MAX_CRL` bytes, all of it before ``deadline``: a server that
    answers a byte at a time cannot hold the request longer than that (urllib's timeout is per
    socket operation)."""
    left = deadline - time.monotonic()
    if left <= 0:
        return None
    chunks: list[bytes] = []
    size = 0
    with urllib.request.urlopen(url, timeout=left) as answer:  # noqa: S310 (http(s) only: CrlCache.points)
        while chunk := answer.read1(64 * 1024):
            size += len(chunk)
            if size > MAX_CRL or time.monotonic() > deadline:
                return None
            chunks.append(chunk)
    return b"".join(chunks)
