"""Opening a CMS SignedData from outside (RFC 5652 sections 5.1-5.6) through asn1crypto: one
signer, id-data content, signed attributes with contentType and messageDigest, the signature over
the DER SET OF signed attributes by the key of the signer's certificate (carried in the
SignedData). The signer's certificate is then validated like any other
(:class:`verification.certificates.CertificateValidator`). Anything malformed is a
:class:`~verification.reasons.Reason`, never an exception."""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass

from asn1crypto import cms
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes

from verification.reasons import Reason
from verification.signatures import verify_signature

#: digest algorithms accepted for signed records (RFC 5754); SHA-1 and MD5 are not
DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {"sha256": hashes.SHA256, "sha384": hashes.SHA384,
                                                  "sha512": hashes.SHA512}
#: what asn1crypto (lazy) and cryptography raise on a part that does not parse
_UNPARSEABLE = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError)


@dataclass(frozen=True)
class SignedRecord:
    """An opened SignedData: its content, the signer's certificate, the other certificates it
    carries (candidate intermediates) and the signingTime attribute (RFC 5652 section 11.3)."""

    content: bytes
    signer: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    signing_time: datetime.datetime | None


def open_signed_data(der: bytes) -> tuple[SignedRecord | None, Reason | None]:
    """The record in ``der`` with its signature checked, or None and the reason it is refused."""
    try:
        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native != "signed_data":
            return None, Reason("not-signed-data", "not a CMS SignedData")
        signed = info["content"]
        for part in ("version", "digest_algorithms", "encap_content_info", "crls", "signer_infos"):
            signed[part].native  # noqa: B018 (asn1crypto is lazy: every part parsed, a malformed one refused)
        encap = signed["encap_content_info"]
        if encap["content_type"].native != "data" or encap["content"].native is None:
            return None, Reason("no-content", "the SignedData encapsulates no id-data content")
        content = bytes(encap["content"].native)
        infos = list(signed["signer_infos"])
        if len(infos) != 1:
            return None, Reason("signer-count", "expected exactly one signer")
        signer_info = infos[0]
        digest_name = signer_info["digest_algorithm"]["algorithm"].native
        if digest_name not in DIGESTS:
            return None, Reason("weak-digest", "the digest algorithm is not accepted")
        attrs = signer_info["signed_attrs"]
        if not len(attrs):
            return None, Reason("malformed", "no signed attributes")
        values = {a["type"].native: a["values"][0].native for a in attrs}
        if values.get("content_type") != "data":
            return None, Reason("content-type", "contentType attribute is not id-data")
        if values.get("message_digest") != hashlib.new(digest_name, content).digest():
            return None, Reason("digest-mismatch", "the content does not match its signed digest")
        certificates = [x509.load_der_x509_certificate(c.chosen.dump()) for c in signed["certificates"] or []
                        if c.name == "certificate"]
        sid = signer_info["sid"]
        if sid.name != "issuer_and_serial_number":
            return None, Reason("signer-missing", "the signer's certificate is not in the SignedData")
        serial, issuer = sid.chosen["serial_number"].native, sid.chosen["issuer"].dump()
        signer = next((c for c in certificates if c.serial_number == serial and c.issuer.public_bytes() == issuer),
                      None)
        if signer is None:
            return None, Reason("signer-missing", "the signer's certificate is not in the SignedData")
        signature = signer_info["signature"].native
        signed_bytes = b"\x31" + attrs.dump()[1:]  # the SET OF's own tag, not [0] IMPLICIT (section 5.4)
        when = values.get("signing_time")
    except _UNPARSEABLE as exc:
        return None, Reason("malformed", f"cannot parse the SignedData: {type(exc).__name__}")
    try:
        verify_signature(signer.public_key(), signature, signed_bytes, DIGESTS[digest_name]())
    except (InvalidSignature, UnsupportedAlgorithm, *_UNPARSEABLE):  # the key itself may not parse
        return None, Reason("bad-signature", "the signature does not verify with the signer's certificate")
    signing_time = when.astimezone(datetime.timezone.utc) if isinstance(when, datetime.datetime) else None
    return SignedRecord(content, signer, tuple(c for c in certificates if c is not signer), signing_time), None
