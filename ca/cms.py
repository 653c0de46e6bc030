"""CMS SignedData (RFC 5652 section 5) signed by a key that may live on a PKCS#11 token.

Used for RFC 3161 time-stamp tokens (eContentType id-ct-TSTInfo) and for signed card records
(id-data). The signer is identified by issuer and serial number (section 5.3); signed attributes
always carry contentType, messageDigest, signingTime and ESS signingCertificateV2 (RFC 5035),
which binds the signature to the signer's certificate so it cannot be re-attributed.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ca.keys import SigningKey


def _asn1_certificate(certificate: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(certificate.public_bytes(Encoding.DER))


def _signature_algorithm(key: SigningKey, digest_name: str) -> str:
    """asn1crypto's name of the signatureAlgorithm (RFC 5754 sections 3.2 and 3.3)."""
    return f"{digest_name}_ecdsa" if key.key_type.is_ec else f"{digest_name}_rsa"


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


def _sorted_attributes(attributes: list[cms.CMSAttribute]) -> cms.CMSAttributes:
    # DER orders a SET OF by the encodings of its elements (X.690 section 11.6); verifiers such as
    # OpenSSL re-encode the set before checking the signature, so the order must already be DER's.
    return cms.CMSAttributes(sorted(attributes, key=lambda a: a.dump()))


def sign_data(
    content: bytes,
    content_type: str,
    signer_certificate: x509.Certificate,
    key: SigningKey,
    signing_time: datetime.datetime,
    certificates: Sequence[x509.Certificate] = (),
) -> bytes:
    """A DER ContentInfo holding SignedData over ``content`` (encapsulated, not detached).

    ``content_type`` is an asn1crypto content type name or dotted OID (``data``, ``tst_info``).
    ``certificates`` go into the certificates field for verifiers (section 5.1); pass the
    signer's certificate first and its chain after it if the verifier should find them there.
    """
    digest_algorithm = key.key_type.signature_hash().name  # sha256 or sha384
    signer = _asn1_certificate(signer_certificate)
    message_digest = hashlib.new(digest_algorithm, content).digest()
    signed_attrs = _sorted_attributes([
        cms.CMSAttribute({"type": "content_type", "values": [cms.ContentType(content_type)]}),
        cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": signing_time.replace(microsecond=0)})]}),
        cms.CMSAttribute({"type": "message_digest", "values": [core.OctetString(message_digest)]}),
        cms.CMSAttribute({"type": "signing_certificate_v2", "values": [signing_certificate_v2(signer)]}),
    ])
    # The signature covers the DER of the attributes with an explicit SET OF tag (section 5.4).
    signature = key.sign(signed_attrs.dump(), key.key_type.signature_hash())
    signer_info = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier(name="issuer_and_serial_number", value={
            "issuer": signer.issuer, "serial_number": signer.serial_number,
        }),
        "digest_algorithm": algos.DigestAlgorithm({"algorithm": digest_algorithm}),
        "signed_attrs": signed_attrs,
        "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": _signature_algorithm(key, digest_algorithm)}),
        "signature": signature,
    })
    content_type_value = cms.ContentType(content_type)
    signed_data = cms.SignedData({
        # version 3 when the encapsulated content is not id-data (section 5.1)
        "version": "v1" if content_type_value.native == "data" else "v3",
        "digest_algorithms": [algos.DigestAlgorithm({"algorithm": digest_algorithm})],
        # id-data content is a plain OCTET STRING; other types (TSTInfo) are parsable DER inside it
        "encap_content_info": {"content_type": content_type_value,
                               "content": core.OctetString(content) if content_type_value.native == "data"
                               else core.ParsableOctetString(content)},
        "certificates": [cms.CertificateChoices(name="certificate", value=_asn1_certificate(c)) for c in certificates],
        "signer_infos": [signer_info],
    })
    return cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()
