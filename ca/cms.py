"""CMS SignedData (RFC 5652 section 5) signed by a key that may live on a PKCS#11 token.

Used for RFC 3161 time-stamp tokens (eContentType id-ct-TSTInfo) and for signed card records
(id-data). The signer is identified by issuer and serial number (section 5.3); signed attributes
always carry contentType, messageDigest, signingTime and ESS signingCertificateV2 (RFC 5035),
which binds the signature to the signer's certificate so it cannot be re-attributed.

An SM2 signer (GB/T 35275-2017, the SM2 profile of PKCS#7/CMS) digests with SM3
(1.2.156.10197.1.401) and signs SM2-with-SM3 (1.2.156.10197.1.501), with Z of its signer identity.
A key of the empty identity (the OpenSSL 3.0 relying parties' choice, docs/sm2.md) signs the SM3
digest of the signed attributes with no Z at all: that is what OpenSSL 3.0's PKCS#7 code, and so
`openssl ts -verify`, checks (PKCS7_signatureVerify hands the digest to EVP_VerifyFinal).
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ca import der
from ca.keys import KeyType, SigningKey
from ca.sm2 import SM2_WITH_SM3_ALGORITHM_DER, SM3_OID, sm3
from ca.sm2_keys import Sm2SigningKey


def _asn1_certificate(certificate: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(certificate.public_bytes(Encoding.DER))


def signing_certificate_v2(certificate: asn1_x509.Certificate) -> tsp.SigningCertificateV2:
    """ESS signingCertificateV2 (RFC 5035 section 3) naming ``certificate`` by SHA-256 hash and issuer/serial."""
    return tsp.SigningCertificateV2({
        "certs": [{
            # hashAlgorithm DEFAULT sha256: omitted, as DER requires
            "cert_hash": hashlib.sha256(certificate.dump()).digest(),
            "issuer_serial": {
                "issuer": [asn1_x509.GeneralName(name="directory_name", value=certificate.issuer)],
                "serial_number": certificate.serial_number,
            },
        }],
    })


_SIGNED_DATA_OID = cms.ContentType("signed_data").dump()  # id-signedData (section 5.1)
_SET, _CONTEXT_0 = 0x31, 0xA0


class CmsSigner:
    """Signs SignedData over encapsulated content of one type, as one signer with one key.

    Everything that does not change between signatures (signer identifier, algorithms,
    certificates, the contentType and signingCertificateV2 attributes) is encoded once here; each
    signature then only assembles DER (asn1crypto's re-encoding of certificates costs ~10 ms a
    signature, which matters when cards are issued in bulk).
    """

    def __init__(self, signer_certificate: x509.Certificate, key: SigningKey, content_type: str = "data",
                 certificates: Sequence[x509.Certificate] = ()) -> None:
        """``content_type`` is an asn1crypto content type name or dotted OID (``data``, ``tst_info``).
        ``certificates`` go into the certificates field for verifiers (section 5.1); pass the signer's
        certificate first and its chain after it if the verifier should find them there."""
        self._key = key
        self._hash = key.key_type.signature_hash()  # sha256, sha384 for P-384, sm3 for SM2
        signer = _asn1_certificate(signer_certificate)
        content_type_value = cms.ContentType(content_type)
        self._content_type = content_type_value.dump()
        # version 3 when the encapsulated content is not id-data (section 5.1)
        self._version = b"\x02\x01\x01" if content_type_value.native == "data" else b"\x02\x01\x03"
        if key.key_type is KeyType.SM2:
            self._digest_algorithm = algos.DigestAlgorithm({"algorithm": SM3_OID}).dump()
            self._signature_algorithm = SM2_WITH_SM3_ALGORITHM_DER
        else:
            self._digest_algorithm = algos.DigestAlgorithm({"algorithm": self._hash.name}).dump()
            self._signature_algorithm = algos.SignedDigestAlgorithm(
                {"algorithm": f"{self._hash.name}_{'ecdsa' if key.key_type.is_ec else 'rsa'}"}).dump()
        self._sid = cms.IssuerAndSerialNumber({"issuer": signer.issuer, "serial_number": signer.serial_number}).dump()
        self._constant_attributes = [
            cms.CMSAttribute({"type": "content_type", "values": [content_type_value]}).dump(),
            cms.CMSAttribute({"type": "signing_certificate_v2", "values": [signing_certificate_v2(signer)]}).dump(),
        ]
        encoded = b"".join(c.public_bytes(Encoding.DER) for c in certificates)
        self._certificates = der.encode(_CONTEXT_0, encoded) if certificates else b""

    def _message_digest(self, content: bytes) -> bytes:
        """The messageDigest attribute's value (section 11.2): SM3 for an SM2 signer, else SHA-2."""
        if self._key.key_type is KeyType.SM2:
            return sm3(content)
        return hashlib.new(self._hash.name, content).digest()

    def _signature(self, signed_attributes: bytes) -> bytes:
        """The signature over the DER signed attributes; without Z for an SM2 key of the empty identity."""
        if isinstance(self._key, Sm2SigningKey) and self._key.signer_id == b"":
            return self._key.sign_digest(sm3(signed_attributes))
        return self._key.sign(signed_attributes, self._hash)

    def sign(self, content: bytes, signing_time: datetime.datetime) -> bytes:
        """A DER ContentInfo holding SignedData over ``content`` (encapsulated, not detached).

        Signed attributes: contentType, signingTime, messageDigest and ESS signingCertificateV2
        (RFC 5035), which binds the signature to the signer's certificate.
        """
        attributes = self._constant_attributes + [
            cms.CMSAttribute({"type": "signing_time",
                              "values": [cms.Time({"utc_time": signing_time.replace(microsecond=0)})]}).dump(),
            cms.CMSAttribute({"type": "message_digest",
                              "values": [core.OctetString(self._message_digest(content))]}).dump(),
        ]
        # DER orders a SET OF by the encodings of its elements (X.690 section 11.6); verifiers such as
        # OpenSSL re-encode the set before checking the signature, so the order must already be DER's.
        attribute_set = b"".join(sorted(attributes))
        # the signature covers the attributes with an explicit SET OF tag (section 5.4)
        signature = self._signature(der.encode(_SET, attribute_set))
        signer_info = der.encode(der.SEQUENCE, b"\x02\x01\x01" + self._sid + self._digest_algorithm
                                 + der.encode(_CONTEXT_0, attribute_set) + self._signature_algorithm
                                 + der.encode(der.OCTET_STRING, signature))
        encapsulated = der.encode(der.SEQUENCE, self._content_type
                                  + der.encode(_CONTEXT_0, der.encode(der.OCTET_STRING, content)))
        signed_data = der.encode(der.SEQUENCE, self._version + der.encode(_SET, self._digest_algorithm) + encapsulated
                                 + self._certificates + der.encode(_SET, signer_info))
        return der.encode(der.SEQUENCE, _SIGNED_DATA_OID + der.encode(_CONTEXT_0, signed_data))


def sign_data(
    content: bytes,
    content_type: str,
    signer_certificate: x509.Certificate,
    key: SigningKey,
    signing_time: datetime.datetime,
    certificates: Sequence[x509.Certificate] = (),
) -> bytes:
    """One signature by :class:`CmsSigner` (keep a CmsSigner when signing many contents)."""
    return CmsSigner(signer_certificate, key, content_type, certificates).sign(content, signing_time)
