"""Opening a CMS SignedData from outside (RFC 5652 sections 5.1-5.6) through asn1crypto: one
signer, encapsulated content of the expected type (id-data for a signed record, id-ct-TSTInfo for
an RFC 3161 time-stamp token, the audit checkpoint's statement type), signed attributes with
contentType and messageDigest, the signature over the DER SET OF signed attributes by the key of
the signer's certificate (carried in the SignedData). An SM2 signer (GB/T 35275-2017) digests
with SM3 (1.2.156.10197.1.401) and signs SM2 with Z of its identity
(:func:`verification.signatures.verify_signer_info`). The signer's certificate is then validated
like any other (:class:`verification.certificates.CertificateValidator`), or against the caller's
own anchor (the audit verifier). Anything malformed is a :class:`~verification.reasons.Reason`,
never an exception; a certificate that does not load (a version above v3 too) is malformed."""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from typing import Any

from asn1crypto import cms, core, tsp
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from ca.sm2 import SM3_OID
from verification.certificates import load_certificate
from verification.reasons import Reason
from verification.signatures import digest, public_key_of, verify_signer_info

#: digest algorithms accepted for signed records (RFC 5754; SM3 for SM2 signers, GB/T 35275-2017);
#: SHA-1 and MD5 are not
DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {"sha256": hashes.SHA256, "sha384": hashes.SHA384,
                                                  "sha512": hashes.SHA512, "sm3": hashes.SM3}
#: what asn1crypto (lazy) and cryptography raise on a part that does not parse
_UNPARSEABLE = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError)
#: the names content types go by in reasons (RFC 5652 section 4, RFC 3161 section 2.4.2)
_TYPE_NAMES = {"data": "id-data", "tst_info": "id-ct-TSTInfo"}


@dataclass(frozen=True)
class SignedRecord:
    """An opened SignedData: its content, the signer's certificate, the other certificates it
    carries (candidate intermediates) and the signingTime attribute (RFC 5652 section 11.3)."""

    content: bytes
    signer: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    signing_time: datetime.datetime | None


def open_signed_data(der: bytes, content_type: str = "data") -> tuple[SignedRecord | None, Reason | None]:
    """The record in ``der`` with its signature checked, or None and the reason it is refused.
    ``content_type``: the eContentType expected, an asn1crypto name (``data``, ``tst_info``) or a
    dotted OID; the contentType signed attribute must name it too (section 11.1)."""
    opened, reason = _open(der, content_type)
    return (opened[0] if opened else None), reason


def _open(der: bytes, content_type: str) -> tuple[tuple[SignedRecord, dict[str, Any]] | None, Reason | None]:
    """:func:`open_signed_data`, with the signed attributes (their parsed first values by name)."""
    expected = cms.ContentType(content_type).native
    name = _TYPE_NAMES.get(expected, expected)
    try:
        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native != "signed_data":
            return None, Reason("not-signed-data", "not a CMS SignedData")
        signed = info["content"]
        # the signed attributes' bytes as received, before .native touches them: asn1crypto
        # completes defaults (NULL digest parameters, ESS hash algorithms) and re-encodes
        received = [i["signed_attrs"].dump() for i in signed["signer_infos"]]
        for part in ("version", "digest_algorithms", "encap_content_info", "crls"):
            signed[part].native  # noqa: B018 (asn1crypto is lazy: every part parsed, a malformed one refused)
        attributes = [_parse_signer_info(signer_info) for signer_info in signed["signer_infos"]]
        encap = signed["encap_content_info"]
        if encap["content_type"].native != expected or isinstance(encap["content"], core.Void):
            return None, Reason("no-content", f"the SignedData encapsulates no {name} content")
        content = bytes(encap["content"])  # the octets, not their parse (a TSTInfo is the caller's to read)
        infos = list(signed["signer_infos"])
        if len(infos) != 1:
            return None, Reason("signer-count", "expected exactly one signer")
        signer_info = infos[0]
        digest_oid = signer_info["digest_algorithm"]["algorithm"]
        digest_name = "sm3" if digest_oid.dotted == SM3_OID else digest_oid.native  # asn1crypto has no name for it
        if digest_name not in DIGESTS:
            return None, Reason("weak-digest", "the digest algorithm is not accepted")
        attrs = signer_info["signed_attrs"]
        if not len(attrs):
            return None, Reason("malformed", "no signed attributes")
        values = attributes[0]
        if values.get("content_type") != expected:
            return None, Reason("content-type", f"contentType attribute is not {name}")
        if values.get("message_digest") != digest(DIGESTS[digest_name](), content):
            return None, Reason("digest-mismatch", "the content does not match its signed digest")
        certificates = [load_certificate(c.chosen.dump()) for c in signed["certificates"] or []
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
        signature_algorithm = signer_info["signature_algorithm"]["algorithm"].contents
        signed_bytes = b"\x31" + received[0][1:]  # the SET OF's own tag, not [0] IMPLICIT (section 5.4)
        when = values.get("signing_time")
    except _UNPARSEABLE as exc:
        return None, Reason("malformed", f"cannot parse the SignedData: {type(exc).__name__}")
    try:
        verify_signer_info(public_key_of(signer), signature_algorithm, signature, signed_bytes, DIGESTS[digest_name]())
    except (InvalidSignature, UnsupportedAlgorithm, *_UNPARSEABLE):  # the key itself may not parse
        return None, Reason("bad-signature", "the signature does not verify with the signer's certificate")
    signing_time = when.astimezone(datetime.timezone.utc) if isinstance(when, datetime.datetime) else None
    record = SignedRecord(content, signer, tuple(c for c in certificates if c is not signer), signing_time)
    return (record, values), None


def _parse_signer_info(signer_info: cms.SignerInfo) -> dict[str, Any]:
    """Every part of ``signer_info`` parsed (a malformed one raises), attribute value by attribute
    value: ``.native`` on the whole SignerInfo re-encodes each container whose parts asn1crypto
    completed with defaults, five times the cost of the parse. The signer's issuer name is not made
    native (it re-encodes too): it must equal a carried certificate's issuer byte for byte. Returns
    the signed attributes' first values by name (each value made native once: asn1crypto makes a
    completed value again on every ``.native``)."""
    for name in ("version", "digest_algorithm", "signature_algorithm", "signature"):
        signer_info[name].native  # noqa: B018
    sid = signer_info["sid"]
    if sid.name == "issuer_and_serial_number":  # the issuer is compared by its DER with the certificates'
        sid.chosen["serial_number"].native  # noqa: B018
    else:
        sid.native  # noqa: B018
    for attribute in signer_info["unsigned_attrs"]:
        attribute["type"].native  # noqa: B018
        for value in attribute["values"]:
            value.native  # noqa: B018
    signed: dict[str, Any] = {}
    for attribute in signer_info["signed_attrs"]:
        natives = [value.native for value in attribute["values"]]
        signed[attribute["type"].native] = natives[0]
    return signed


@dataclass(frozen=True)
class TimeStampToken:
    """An opened RFC 3161 time-stamp token (section 2.4.2): the TSA's signed record and the fields
    of its TSTInfo a verifier compares with what it expects."""

    record: SignedRecord
    policy: str
    hash_algorithm: str
    message_imprint: bytes
    serial_number: int
    gen_time: datetime.datetime

    def covers(self, data: bytes) -> bool:
        """Whether the token's message imprint is the hash of ``data`` (section 2.4.2,
        messageImprint), by one of the digests accepted for signatures (:data:`DIGESTS`)."""
        return self.hash_algorithm in DIGESTS and digest(DIGESTS[self.hash_algorithm](), data) == self.message_imprint


def open_timestamp_token(der: bytes) -> tuple[TimeStampToken | None, Reason | None]:
    """The RFC 3161 token in ``der`` (a ContentInfo holding SignedData over a TSTInfo, section
    2.4.2) with its signature checked; or None and why it is refused. The signer's certificate
    must carry the one extended key usage timeStamping, critical (section 2.3), and the ESS
    signingCertificate(V2) attribute, when present, must name it (RFC 5816 section 2.2.1)."""
    opened, reason = _open(der, "tst_info")
    if opened is None:
        return None, reason
    record, attributes = opened
    try:
        info = tsp.TSTInfo.load(record.content, strict=True)  # parsed whole as the SignedData was opened
        imprint = info["message_imprint"]
        token = TimeStampToken(record, info["policy"].native, imprint["hash_algorithm"]["algorithm"].native,
                               imprint["hashed_message"].native, info["serial_number"].native,
                               info["gen_time"].native.astimezone(datetime.timezone.utc))
        if info["version"].native != "v1":
            return None, Reason("malformed", "the TSTInfo is not version 1")
        bound = _names_signer(attributes, record.signer)
    except _UNPARSEABLE as exc:
        return None, Reason("malformed", f"cannot parse the TSTInfo: {type(exc).__name__}")
    if not bound:
        return None, Reason("signer-missing", "the signingCertificate attribute names another certificate")
    try:
        usage = record.signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        usage = None
    except _UNPARSEABLE:
        return None, Reason("malformed-certificate", "the TSA certificate's extensions do not parse")
    if usage is None or not usage.critical or list(usage.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        return None, Reason("not-a-tsa", "the signer's certificate is not a time-stamping unit's (RFC 3161 "
                            "section 2.3: the one critical extended key usage timeStamping)")
    return token, None


def _names_signer(attributes: dict[str, Any], signer: x509.Certificate) -> bool:
    """Whether the ESS signingCertificate or signingCertificateV2 attribute, if any, names
    ``signer`` by its hash (RFC 2634 section 5.4, RFC 5035 section 3: the first ESSCertID is the
    signer's)."""
    for attribute, default in (("signing_certificate_v2", "sha256"), ("signing_certificate", "sha1")):
        value = attributes.get(attribute)
        if value is None:
            continue
        first = value["certs"][0]
        algorithm = (first.get("hash_algorithm") or {}).get("algorithm", default)
        encoded = signer.public_bytes(Encoding.DER)
        return algorithm in ("sha1", *DIGESTS) and hashlib.new(algorithm, encoded).digest() == first["cert_hash"]
    return True
