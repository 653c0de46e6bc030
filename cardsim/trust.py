"""Checking signed things against the Tessera PKI: chains, revocation status, CMS signatures.

Small and reusable (the verification API of issue 5 builds on it). Path building and X.509
policy use ``cryptography.x509.verification`` (RFC 5280 section 6); it does no revocation
checking, so status is checked here: online with OCSP (RFC 6960, a signed response from the CA's
delegated responder, fresh, with a nonce) or offline with the CA's CRL (RFC 5280 section 6.3,
signature and freshness checked). CMS SignedData is checked per RFC 5652 section 5.4/5.6:
messageDigest over the content, signature over the DER SET OF signed attributes.
Every function returns a :class:`Check` (outcome and reason) instead of raising on bad input.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from ca import der
from verification.signatures import verify_signature
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError


@dataclass(frozen=True)
class Check:
    """One check's outcome: ``ok``, and a short machine ``reason`` with a human ``detail``."""

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


@dataclass(frozen=True)
class SignedContent:
    """The result of opening a CMS SignedData: content, signer certificate, signing time."""

    content: bytes
    signer: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    signing_time: datetime.datetime | None


_OID_SIGNED_DATA = bytes.fromhex("2a864886f70d010702")
_OID_DATA = bytes.fromhex("2a864886f70d010701")
_OID_CONTENT_TYPE = bytes.fromhex("2a864886f70d010903")
_OID_MESSAGE_DIGEST = bytes.fromhex("2a864886f70d010904")
_OID_SIGNING_TIME = bytes.fromhex("2a864886f70d010905")
_DIGESTS = {
    bytes.fromhex("608648016503040201"): hashes.SHA256(),
    bytes.fromhex("608648016503040202"): hashes.SHA384(),
    bytes.fromhex("608648016503040203"): hashes.SHA512(),
}
_CERTIFICATES: dict[bytes, tuple[x509.Certificate, bytes]] = {}
#: the DER of a SignedData's whole certificates field -> its parsed certificates (signers are few)
_CERTIFICATE_SETS: dict[bytes, list[tuple[x509.Certificate, bytes]]] = {}
#: a signer certificate -> its public key
_PUBLIC_KEYS: dict[x509.Certificate, object] = {}


def _public_key(certificate: x509.Certificate) -> object:
    """A signer certificate's public key, loaded once per process (signers are few)."""
    key = _PUBLIC_KEYS.get(certificate)
    if key is None:
        if len(_PUBLIC_KEYS) > 1000:
            _PUBLIC_KEYS.clear()
        key = _PUBLIC_KEYS[certificate] = certificate.public_key()
    return key


def _certificate(raw: bytes) -> tuple[x509.Certificate, bytes]:
    """A parsed certificate and its issuer's DER name, kept per process (signers are few)."""
    cached = _CERTIFICATES.get(raw)
    if cached is None:
        if len(_CERTIFICATES) > 1000:
            _CERTIFICATES.clear()
        cert = x509.load_der_x509_certificate(raw)
        cached = _CERTIFICATES[raw] = (cert, cert.issuer.public_bytes())
    return cached


def _certificate_set(raw: bytes) -> list[tuple[x509.Certificate, bytes]]:
    """The certificates of a SignedData's certificates field (its DER, tag and length included),
    kept per process by those bytes: every record of a department carries the same signer
    certificate and CA."""
    cached = _CERTIFICATE_SETS.get(raw)
    if cached is None:
        if len(_CERTIFICATE_SETS) > 1000:
            _CERTIFICATE_SETS.clear()
        cached = _CERTIFICATE_SETS[raw] = [_certificate(raw[c.start:c.end])
                                           for c in der.children(raw, der.read_tlv(raw))]
    return cached


def utc_time(raw: bytes) -> datetime.datetime:
    """A DER UTCTime ``YYMMDDHHMMSSZ`` (X.690 section 11.8), two-digit years as ``strptime``'s
    ``%y`` reads them (69-99: 19xx)."""
    if len(raw) != 13 or raw[12:] != b"Z" or not raw[:12].isdigit():
        raise ValueError("not a DER UTCTime")
    year = int(raw[0:2])
    return datetime.datetime(year + (1900 if year >= 69 else 2000), int(raw[2:4]), int(raw[4:6]), int(raw[6:8]),
                             int(raw[8:10]), int(raw[10:12]), tzinfo=datetime.timezone.utc)


_INTEGER, _OID, _OCTETS, _SEQUENCE, _SET, _CONTEXT_0, _CONTEXT_1 = 0x02, 0x06, 0x04, 0x30, 0x31, 0xA0, 0xA1


def _shape(*expected: tuple[der.Tlv, int]) -> None:
    """Each element has the tag RFC 5652's ASN.1 gives it (the walk reads by position, so a wrong
    tag would otherwise be read as the field it stands in for)."""
    for element, tag in expected:
        if element[0] != tag:
            raise ValueError(f"tag {element[0]:#x} where {tag:#x} belongs")


def _algorithm(data: bytes, element: der.Tlv) -> der.Tlv:
    """An AlgorithmIdentifier's OID; its parameters absent or NULL, the only forms of the SHA-2
    digests (RFC 5754 section 2) and of the ECDSA / PKCS#1 v1.5 signatures accepted here."""
    _shape((element, _SEQUENCE))
    fields = der.children(data, element)
    _shape((fields[0], _OID))
    if len(fields) > 2 or (len(fields) == 2 and data[fields[1][1]:fields[1][3]] != b"\x05\x00"):
        raise ValueError("algorithm parameters other than NULL")
    return fields[0]


def open_signed_data(data: bytes) -> tuple[SignedContent | None, Check]:
    """Parse a ContentInfo/SignedData with encapsulated id-data content and verify its one
    signature (RFC 5652 sections 5.1-5.6): messageDigest over the content, contentType id-data,
    the signature over the DER SET OF signed attributes with the signer's certificate key.

    A strict DER walk (ca.der) rather than asn1crypto: ten times faster, and anything that is not
    the expected shape (every tag, AlgorithmIdentifier parameters absent or NULL) is refused. It
    reads one level at a time, so no nesting can exhaust the stack. Kept honest by a differential
    test against asn1crypto on valid and mutated records
    (tests/test_signed_record_differential.py)."""
    name = "signature"
    try:
        outer = der.read_tlv(data)
        if outer[3] != len(data) or outer[0] != der.SEQUENCE:
            raise ValueError("trailing data")
        oid, explicit = der.children(data, outer)
        _shape((oid, _OID), (explicit, _CONTEXT_0))
        if data[oid[2]:oid[3]] != _OID_SIGNED_DATA:
            return None, Check(name, False, "not-signed-data", "not a CMS SignedData")
        (signed,) = der.children(data, explicit)
        _shape((signed, _SEQUENCE))
        parts = der.children(data, signed)
        optional = parts[3:-1]  # certificates [0], crls [1], each at most once, in that order
        if len(parts) < 4 or [p[0] for p in optional] not in ([], [_CONTEXT_0], [_CONTEXT_1], [_CONTEXT_0, _CONTEXT_1]):
            raise ValueError("not the fields of a SignedData")
        _shape((parts[0], _INTEGER), (parts[1], _SET), (parts[2], _SEQUENCE), (parts[-1], _SET))
        for algorithm in der.children(data, parts[1]):  # digestAlgorithms: SET OF AlgorithmIdentifier
            _algorithm(data, algorithm)
        encap = der.children(data, parts[2])
        _shape((encap[0], _OID))
        if data[encap[0][2]:encap[0][3]] != _OID_DATA or len(encap) != 2:
            return None, Check(name, False, "no-content", "the SignedData encapsulates no id-data content")
        _shape((encap[1], _CONTEXT_0))
        (octets,) = der.children(data, encap[1])
        _shape((octets, _OCTETS))
        content = data[octets[2]:octets[3]]
        certificates: list[tuple[x509.Certificate, bytes]] = []
        signer_infos = parts[-1]
        for part in parts[3:-1]:
            if part[0] == 0xA0:
                certificates = _certificate_set(data[part[1]:part[3]])
        infos = der.children(data, signer_infos)
        if len(infos) != 1:
            return None, Check(name, False, "signer-count", "expected exactly one signer")
        _shape((infos[0], _SEQUENCE))
        fields = der.children(data, infos[0])
        if len(fields) not in (6, 7):
            raise ValueError("not the fields of a SignerInfo")
        _shape((fields[0], _INTEGER), (fields[1], _SEQUENCE), (fields[2], _SEQUENCE), (fields[4], _SEQUENCE),
               (fields[5], _OCTETS), *(((fields[6], _CONTEXT_1),) if len(fields) == 7 else ()))
        sid = der.children(data, fields[1])
        if len(sid) != 2:
            raise ValueError("not an IssuerAndSerialNumber")
        _shape((sid[0], _SEQUENCE), (sid[1], _INTEGER))
        issuer_der = data[sid[0][1]:sid[0][3]]
        serial = int.from_bytes(data[sid[1][2]:sid[1][3]], "big", signed=True)
        signer = next((c for c, issuer in certificates if c.serial_number == serial and issuer == issuer_der), None)
        if signer is None:
            return None, Check(name, False, "signer-missing", "the signer's certificate is not in the SignedData")
        digest_oid = _algorithm(data, fields[2])
        _algorithm(data, fields[4])
        hash_algorithm = _DIGESTS.get(data[digest_oid[2]:digest_oid[3]])
        if hash_algorithm is None:
            return None, Check(name, False, "weak-digest", "the digest algorithm is not accepted")
        attrs = fields[3]
        if attrs[0] != 0xA0:
            return None, Check(name, False, "malformed", "no signed attributes")
        values: dict[bytes, bytes] = {}
        for attribute in der.children(data, attrs):
            _shape((attribute, _SEQUENCE))
            attr_oid, attr_set = der.children(data, attribute)
            _shape((attr_oid, _OID), (attr_set, _SET))
            (value,) = der.children(data, attr_set)
            values[data[attr_oid[2]:attr_oid[3]]] = data[value[2]:value[3]]
        if values.get(_OID_CONTENT_TYPE) != _OID_DATA:
            return None, Check(name, False, "content-type", "contentType attribute is not id-data")
        if values.get(_OID_MESSAGE_DIGEST) != hashlib.new(hash_algorithm.name, content).digest():
            return None, Check(name, False, "digest-mismatch", "the content does not match its signed digest")
        signature_field = fields[5]
        signature = data[signature_field[2]:signature_field[3]]
        # the signature covers the attributes with the SET OF tag, not the [0] IMPLICIT one (section 5.4)
        signed_attributes = b"\x31" + data[attrs[1] + 1:attrs[3]]
        verify_signature(_public_key(signer), signature, signed_attributes, hash_algorithm)
        signing_time = None
        raw_time = values.get(_OID_SIGNING_TIME)
        if raw_time is not None and len(raw_time) == 13:
            signing_time = utc_time(raw_time)
        intermediates = tuple(c for c, _ in certificates if c is not signer)
        return SignedContent(content, signer, intermediates, signing_time), Check(name, True)
    except InvalidSignature:
        return None, Check(name, False, "bad-signature", "the signature does not verify with the signer's key")
    except (ValueError, TypeError, IndexError, UnsupportedAlgorithm) as exc:
        # UnsupportedAlgorithm: the signer certificate's key is of a kind cryptography cannot load;
        # the walk itself is flat (ca.der reads one level at a time), so nesting cannot recurse
        return None, Check(name, False, "malformed", f"cannot parse the SignedData: {type(exc).__name__}")


class ChainValidator:
    """Path validation to a fixed set of roots (cryptography.x509.verification).

    The CA part of a path is shared by every certificate its CA issued (thousands of cards, one
    citizen CA): once a certificate has validated through the whole path (RFC 5280 section 6.1:
    CA policy, signatures, validity), the CAs above it are kept, with the period in which all of
    them are valid. A later certificate from the same issuer is then validated by the same
    verifier with its issuer as the anchor: its own signature, validity and policy, the per
    certificate part, are checked in full every time. Only CAs without name constraints are kept
    (an anchor's constraints would not be applied); anything that does not validate that way is
    validated along the whole path again, so failures read as they always did."""

    def __init__(self, roots: Sequence[x509.Certificate]) -> None:
        self._store = Store(list(roots))
        self._builders: dict[datetime.datetime, PolicyBuilder] = {}
        #: DER of an issuer's name -> [(issuer, its store, start and end of the path's validity)]
        self._issuers: dict[bytes, list[tuple[x509.Certificate, Store, datetime.datetime, datetime.datetime]]] = {}
        self._issuer_builders: dict[tuple[bytes, int, datetime.datetime], PolicyBuilder] = {}

    @staticmethod
    def _builder(store: Store, at: datetime.datetime) -> PolicyBuilder:
        # Web PKI rules for the CAs; end entities here (card, department certificates) carry no
        # subjectAltName, so their extensions are checked by the caller (key usage, EKU)
        return (PolicyBuilder().store(store).time(at)
                .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                                    ee_policy=ExtensionPolicy.permit_all()))

    def _verifier(self, at: datetime.datetime) -> object:
        at = at.replace(microsecond=0)
        builder = self._builders.get(at)
        if builder is None:
            builder = self._builder(self._store, at)
            self._builders = {at: builder}
        return builder.build_client_verifier()

    def _keep_issuer(self, chain: Sequence[x509.Certificate]) -> None:
        """Keep the CA part of a validated ``chain`` (leaf, issuer, ..., root)."""
        cas = list(chain[1:])
        if len(cas) < 2:  # issued by a root: the whole path is the short one already
            return
        for ca in cas:
            try:
                ca.extensions.get_extension_for_class(x509.NameConstraints)
                return
            except x509.ExtensionNotFound:
                pass
        issuer = cas[0]
        key = issuer.subject.public_bytes()
        kept = self._issuers.setdefault(key, [])
        if any(entry[0] == issuer for entry in kept) or len(kept) >= 8:
            return
        kept.append((issuer, Store([issuer]), max(c.not_valid_before_utc for c in cas),
                     min(c.not_valid_after_utc for c in cas)))

    def _by_kept_issuer(self, leaf: x509.Certificate, at: datetime.datetime) -> list[x509.Certificate] | None:
        """The path through a kept issuer, or None when none validates ``leaf`` that way."""
        name = leaf.issuer.public_bytes()
        kept = self._issuers.get(name)
        if not kept:
            return None
        at = at.replace(microsecond=0)
        for index, (issuer, store, valid_from, valid_until) in enumerate(kept):
            if not valid_from <= at <= valid_until:
                continue
            builder = self._issuer_builders.get((name, index, at))
            if builder is None:
                if len(self._issuer_builders) > 64:
                    self._issuer_builders.clear()
                builder = self._issuer_builders[(name, index, at)] = self._builder(store, at)
            try:
                builder.build_client_verifier().verify(leaf, [])
            except (VerificationError, ValueError):
                continue
            return [leaf, issuer]
        return None

    def validate_path(self, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate],
                      at: datetime.datetime, name: str = "chain",
                      eku: x509.ObjectIdentifier | None = None) -> tuple[Check, list[x509.Certificate] | None]:
        """RFC 5280 section 6 path validation at ``at``; ``eku`` is required when given. With the
        path on success: the leaf, its issuer, and (when validated in full) the CAs up to the root."""
        chain = self._by_kept_issuer(leaf, at)
        if chain is None:
            try:
                chain = list(self._verifier(at).verify(leaf, list(intermediates)).chain)  # type: ignore[attr-defined]
            except VerificationError as exc:
                text = str(exc)
                reason = "expired" if "expired" in text or "not valid" in text else "untrusted"
                return Check(name, False, reason, text[:200]), None
            except ValueError as exc:
                return Check(name, False, "untrusted", str(exc)[:200]), None
            self._keep_issuer(chain)
        if eku is not None:
            try:
                usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
                if eku not in usages:
                    return Check(name, False, "wrong-purpose", "the certificate lacks the required extended key usage"), None
            except x509.ExtensionNotFound:
                return Check(name, False, "wrong-purpose", "the certificate has no extended key usage"), None
        return Check(name, True), chain

    def validate(self, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate],
                 at: datetime.datetime, name: str = "chain", eku: x509.ObjectIdentifier | None = None) -> Check:
        """RFC 5280 section 6 path validation at ``at``; ``eku`` is required when given."""
        return self.validate_path(leaf, intermediates, at, name, eku)[0]


def issuer_of(certificate: x509.Certificate, candidates: Sequence[x509.Certificate],
              verified: bool = False) -> x509.Certificate | None:
    """The candidate that issued ``certificate``; ``verified``: the chain was validated already."""
    for candidate in candidates:
        if verified and candidate.subject == certificate.issuer:
            return candidate
        if candidate.subject == certificate.issuer:
            try:
                certificate.verify_directly_issued_by(candidate)
                return candidate
            except (ValueError, TypeError, InvalidSignature):
                continue
    return None


class CrlStatus:
    """Offline status from CRLs (RFC 5280 section 6.3): one verified CRL per issuing CA.

    Given a ``source``, the CRLs are fetched again every ``max_age`` seconds, so a long-running
    service sees a card reported lost within that time; ``generation`` counts the loads so
    callers can drop answers cached from older CRLs."""

    def __init__(self, crls: Sequence[x509.CertificateRevocationList], issuers: Sequence[x509.Certificate],
                 source: Callable[[], Sequence[x509.CertificateRevocationList]] | None = None,
                 max_age: float = 60.0) -> None:
        self._issuers = list(issuers)
        self._source = source
        self._max_age = max_age
        self.generation = 0
        self._load(crls)

    def _load(self, crls: Sequence[x509.CertificateRevocationList]) -> None:
        by_issuer: dict[bytes, x509.CertificateRevocationList] = {}
        problems: dict[bytes, str] = {}
        for crl in crls:
            issuer = next((c for c in self._issuers if c.subject == crl.issuer), None)
            key = crl.issuer.public_bytes()
            if issuer is None or not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                problems[key] = "the CRL's signature does not verify with its issuer"
                continue
            by_issuer[key] = crl
        self._by_issuer, self._problems = by_issuer, problems
        self._numbers = {key: _crl_number(crl) for key, crl in by_issuer.items()}
        self._loaded = time.monotonic()
        self.generation += 1

    def refresh_if_old(self) -> None:
        if self._source is not None and time.monotonic() - self._loaded > self._max_age:
            self._load(self._source())

    def status(self, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime.datetime,
               name: str = "status") -> Check:
        self.refresh_if_old()
        key = certificate.issuer.public_bytes()
        crl = self._by_issuer.get(key)
        if crl is None:
            return Check(name, False, "status-unknown", self._problems.get(key, "no CRL for the issuer"))
        if crl.next_update_utc is not None and crl.next_update_utc < at:
            return Check(name, False, "status-stale", "the CRL is past its nextUpdate")
        entry = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
        if entry is not None:
            try:
                reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
            except x509.ExtensionNotFound:
                reason = "unspecified"
            return Check(name, False, "revoked", f"revoked ({reason}) at {entry.revocation_date_utc:%Y-%m-%d %H:%M:%SZ}")
        return Check(name, True, "good", f"not on CRL #{self._numbers[key]}")


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return -1


class OcspStatus:
    """Online status from the CA's OCSP responder (RFC 6960), URL from the certificate's AIA."""

    def __init__(self, timeout: float = 5.0,
                 fetch: Callable[[str, bytes], bytes] | None = None) -> None:
        self.timeout = timeout
        self._fetch = fetch or self._post
        #: (issuer key hash, serial) -> a verified, conclusive answer and its nextUpdate
        self._kept: dict[tuple[bytes, int], tuple[Check, datetime.datetime]] = {}

    def _post(self, url: str, body: bytes) -> bytes:
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/ocsp-request"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return response.read(64 * 1024)

    def status(self, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime.datetime,
               name: str = "status") -> Check:
        """A fresh answer (with a nonce) from the certificate's OCSP responder."""
        return self._ask(certificate, issuer, at, name)[0]

    def kept_status(self, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime.datetime,
                    name: str = "status") -> Check:
        """As :meth:`status`, but a verified good or revoked answer is reused until its nextUpdate
        (RFC 6960 section 2.4: the responder vouches for it until then). For the few certificates
        every card shares (the departments' signers), not for a card's own."""
        key = (issuer.fingerprint(hashes.SHA256()), certificate.serial_number)
        kept = self._kept.get(key)
        if kept is not None and at < kept[1]:
            return kept[0]
        check, next_update = self._ask(certificate, issuer, at, name)
        if next_update is not None and at < next_update and check.reason in ("good", "revoked"):
            if len(self._kept) > 1_000:
                self._kept.clear()
            self._kept[key] = (check, next_update)
        return check

    def _ask(self, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime.datetime,
             name: str) -> tuple[Check, datetime.datetime | None]:
        """(the answer, the response's nextUpdate when the response verified)."""
        try:
            aia = certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
            url = next(d.access_location.value for d in aia if d.access_method == x509.AuthorityInformationAccessOID.OCSP)
        except (x509.ExtensionNotFound, StopIteration):
            return Check(name, False, "status-unknown", "the certificate names no OCSP responder"), None
        nonce = os.urandom(16)
        request = (ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, hashes.SHA256())
                   .add_extension(x509.OCSPNonce(nonce), critical=False).build())
        try:
            raw = self._fetch(url, request.public_bytes(serialization.Encoding.DER))
            response = ocsp.load_der_ocsp_response(raw)
        except (OSError, ValueError) as exc:
            return Check(name, False, "status-unavailable", f"OCSP responder unreachable: {type(exc).__name__}"), None
        if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            return Check(name, False, "status-unavailable", f"OCSP responder said {response.response_status.name}"), None
        responder = next(iter(response.certificates), None)
        signer_key = issuer.public_key()
        if responder is not None:
            # delegated responder: issued by the CA, id-kp-OCSPSigning (RFC 6960 section 4.2.2.2)
            try:
                responder.verify_directly_issued_by(issuer)
                eku = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
                if x509.ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
                    raise ValueError("no OCSPSigning")
            except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
                return Check(name, False, "status-untrusted", "the OCSP responder is not authorised by the CA"), None
            signer_key = responder.public_key()
        try:
            verify_signature(signer_key, response.signature, response.tbs_response_bytes,
                             response.signature_hash_algorithm or hashes.SHA256())
        except InvalidSignature:
            return Check(name, False, "status-untrusted", "the OCSP response signature does not verify"), None
        try:
            got = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
            if got != nonce:
                return Check(name, False, "status-replayed", "the OCSP response carries another nonce"), None
        except x509.ExtensionNotFound:
            if response.next_update_utc is not None and response.next_update_utc < at:
                return Check(name, False, "status-stale", "the OCSP response is past its nextUpdate"), None
        if response.serial_number != certificate.serial_number:
            return Check(name, False, "status-unknown", "the OCSP response is about another certificate"), None
        next_update = response.next_update_utc
        if response.certificate_status == ocsp.OCSPCertStatus.GOOD:
            return Check(name, True, "good", "OCSP: good"), next_update
        if response.certificate_status == ocsp.OCSPCertStatus.REVOKED:
            reason = response.revocation_reason.value if response.revocation_reason else "unspecified"
            return Check(name, False, "revoked", f"OCSP: revoked ({reason})"), next_update
        return Check(name, False, "status-unknown", "OCSP: unknown certificate"), None
