"""An RFC 3161 time-stamping authority whose key may live on a PKCS#11 token.

:meth:`TimeStampAuthority.respond` takes a DER TimeStampReq (section 2.4.1) and returns a DER
TimeStampResp (section 2.4.2): either ``granted`` with a time-stamp token (CMS SignedData over a
TSTInfo, signed as in :mod:`ca.cms`, with ESS signingCertificateV2 per RFC 5816), or
``rejection`` with the failure reason. Every token's serial number is recorded before the reply
leaves, so serials are provably unique (section 2.4.2, serialNumber). Message imprints may be
SM3 (GB/T 32905, OID 1.2.156.10197.1.401); an SM2 TSA signs its tokens SM2-with-SM3 (ca.cms).
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from asn1crypto import cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ca.cms import sign_data
from ca.errors import KeyUnavailable
from ca.keys import SigningKey
from ca.sm2 import SM3_OID

#: Message imprint hashes accepted, with their digest lengths. SHA-1 is refused (badAlg).
ACCEPTED_HASHES = {"sha256": 32, "sha384": 48, "sha512": 64, "sm3": 32}
#: the hashes asn1crypto knows by OID only, by the name used here (and recorded)
_OID_NAMES = {SM3_OID: "sm3"}
_NAME_OIDS = {name: oid for oid, name in _OID_NAMES.items()}
MAX_QUERY_BYTES = 8 * 1024
#: Clock accuracy claimed in every token (section 2.4.2, accuracy)
ACCURACY_SECONDS = 1


@dataclass(frozen=True)
class IssuedTimestamp:
    """What is recorded of each token."""

    serial: int
    gen_time: datetime.datetime
    hash_algorithm: str
    message_imprint: bytes
    policy: str


@dataclass(frozen=True)
class TimestampReply:
    """A DER TimeStampResp and how to send it over HTTP (section 3.4)."""

    der: bytes
    granted: bool
    failure: str | None = None

    @property
    def http_status(self) -> int:
        if self.granted:
            return 200
        return 503 if self.failure in ("system_failure", "time_not_available") else 400


class TimeStampResp(core.Sequence):
    """TimeStampResp with timeStampToken OPTIONAL, as section 2.4.2 has it (asn1crypto 1.5 requires it)."""

    _fields = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


class _Rejected(Exception):
    def __init__(self, failure: str, text: str) -> None:
        super().__init__(text)
        self.failure = failure
        self.text = text


def _rejection(failure: str, text: str) -> TimestampReply:
    response = TimeStampResp({
        "status": {
            "status": "rejection",
            "status_string": [text],
            "fail_info": tsp.PKIFailureInfo({failure}),
        },
    })
    return TimestampReply(response.dump(), False, failure)


class TimeStampAuthority:
    """Issues time-stamp tokens under one policy with one TSA certificate and key."""

    def __init__(
        self,
        key: SigningKey,
        certificate: x509.Certificate,
        chain: Sequence[x509.Certificate],
        policy: str,
        record: Callable[[IssuedTimestamp], None],
        clock: Callable[[], datetime.datetime],
    ) -> None:
        self._key = key
        self._certificate = certificate
        # the issuing CA(s) without the self-signed root: verifiers hold the root as their anchor
        self._chain = [c for c in chain if c.subject != c.issuer]
        self._policy = policy
        self._record = record
        self._clock = clock
        self._tsa_name = asn1_x509.GeneralName(
            name="directory_name", value=asn1_x509.Name.load(certificate.subject.public_bytes()))

    def respond(self, query_der: bytes) -> TimestampReply:
        """Answer one DER TimeStampReq; bad queries get a rejection, never an exception."""
        try:
            query = _parse(query_der, self._policy)
        except _Rejected as rejected:
            return _rejection(rejected.failure, rejected.text)
        hash_name, imprint, nonce, cert_req = query
        for _ in range(3):
            gen_time = self._clock().astimezone(datetime.timezone.utc).replace(microsecond=0)
            serial = secrets.randbits(127) | (1 << 127)  # 128-bit positive, fixed length
            issued = IssuedTimestamp(serial, gen_time, hash_name, imprint, self._policy)
            try:
                self._record(issued)
                break
            except IntegrityError:
                continue  # a serial collision (2^-127): draw again
            except SQLAlchemyError:
                return _rejection("system_failure", "the time-stamp register is unavailable")
        else:
            return _rejection("system_failure", "could not allocate a unique serial number")
        tst_info = tsp.TSTInfo({
            "version": "v1",
            "policy": self._policy,
            "message_imprint": {"hash_algorithm": {"algorithm": _NAME_OIDS.get(hash_name, hash_name)},
                                "hashed_message": imprint},
            "serial_number": serial,
            "gen_time": gen_time,
            "accuracy": {"seconds": ACCURACY_SECONDS},
            "nonce": nonce,
            "tsa": self._tsa_name,
        })
        certificates = [self._certificate, *self._chain] if cert_req else []
        try:
            token = sign_data(tst_info.dump(), "tst_info", self._certificate, self._key, gen_time, certificates)
        except KeyUnavailable:
            return _rejection("system_failure", "the time-stamping key is unavailable")
        response = TimeStampResp({
            "status": {"status": "granted"},
            "time_stamp_token": cms.ContentInfo.load(token),
        })
        return TimestampReply(response.dump(), True)


def _parse(query_der: bytes, policy: str) -> tuple[str, bytes, int | None, bool]:
    """Check a TimeStampReq against what this TSA supports (section 2.4.1)."""
    if not query_der or len(query_der) > MAX_QUERY_BYTES:
        raise _Rejected("bad_request", f"a time-stamp query must be between 1 and {MAX_QUERY_BYTES} bytes")
    try:
        query = tsp.TimeStampReq.load(query_der, strict=True)
        version = query["version"].native
        hash_name = query["message_imprint"]["hash_algorithm"]["algorithm"].native
        hash_name = _OID_NAMES.get(hash_name, hash_name)
        imprint = query["message_imprint"]["hashed_message"].native
        requested_policy = query["req_policy"].native
        nonce = query["nonce"].native
        cert_req = bool(query["cert_req"].native)
        has_extensions = bool(query["extensions"].native)
    except (ValueError, TypeError, KeyError):
        raise _Rejected("bad_data_format", "the body is not a DER TimeStampReq (RFC 3161 section 2.4.1)") from None
    if version != "v1":
        raise _Rejected("bad_request", "only TimeStampReq version 1 is supported")
    if hash_name not in ACCEPTED_HASHES:
        raise _Rejected("bad_alg", f"unsupported message imprint hash {hash_name}; use {', '.join(ACCEPTED_HASHES)}")
    if not isinstance(imprint, bytes) or len(imprint) != ACCEPTED_HASHES[hash_name]:
        raise _Rejected("bad_data_format", f"a {hash_name} message imprint has {ACCEPTED_HASHES[hash_name]} bytes")
    if requested_policy is not None and requested_policy != policy:
        raise _Rejected("unaccepted_policy", f"this TSA issues under policy {policy} only")
    if has_extensions:
        raise _Rejected("unaccepted_extensions", "no request extensions are supported")
    if nonce is not None and (nonce < 0 or nonce.bit_length() > 160):
        raise _Rejected("bad_request", "the nonce must be a non-negative integer of at most 160 bits")
    return hash_name, imprint, nonce, cert_req
