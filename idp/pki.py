"""HTTP endpoints of the PKI: CA certificates, CRLs and time-stamping (RFC 3161).

OCSP is served by :mod:`idp.ocsp_http`, outside Flask, because it is the hottest path.

Media types: application/pkix-cert and application/pkix-crl (RFC 2585 section 4), application/timestamp-query/-reply
(RFC 3161 section 4).
"""

from __future__ import annotations

from email.utils import format_datetime

from cryptography.hazmat.primitives.serialization import Encoding
from flask import Blueprint, Response, request

from ca.timestamps import StoredTimeStampAuthority
from idp.deployment import current_deployment
from idp.problems import problem

bp = Blueprint("pki", __name__)


@bp.get("/ca/<name>.crt")
def ca_certificate(name: str) -> Response:
    """The caIssuers URL (RFC 5280 section 4.2.2.1): one DER certificate."""
    cert = current_deployment.ca.authority_certificate(name)
    return Response(cert.public_bytes(Encoding.DER), mimetype="application/pkix-cert",
                    headers={"Cache-Control": "public, max-age=86400"})


@bp.get("/ca/<name>/chain.pem")
def ca_chain(name: str) -> Response:
    """The authority's certificate and its parents up to the root, PEM."""
    chain = current_deployment.ca.chain(name)
    return Response(b"".join(c.public_bytes(Encoding.PEM) for c in chain), mimetype="application/pem-certificate-chain")


@bp.get("/crl/<name>.crl")
def crl(name: str) -> Response:
    """The CDP URL (RFC 5280 section 4.2.1.13): the current full CRL, DER."""
    current = current_deployment.ca.current_crl(name)
    max_age = max(0, int((current.next_update - current_deployment.now()).total_seconds()) // 4)
    return Response(current.der, mimetype="application/pkix-crl", headers={
        "Cache-Control": f"public, max-age={max_age}",
        "Last-Modified": format_datetime(current.this_update, usegmt=True),
        "Expires": format_datetime(current.next_update, usegmt=True),
    })


def _time_stamp(authority: StoredTimeStampAuthority) -> Response:
    """Time-stamp protocol via HTTP (RFC 3161 section 3.4): one DER TimeStampReq in, one TimeStampResp out."""
    if request.mimetype != "application/timestamp-query":
        return problem(415, "Unsupported Media Type", "send an application/timestamp-query body", "media-type")
    query = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH: 413 before any work
    reply = authority.respond(query)
    return Response(reply.der, status=reply.http_status, mimetype="application/timestamp-reply")


@bp.post("/tsa")
def tsa() -> Response:
    """The TSA of the ECDSA hierarchy."""
    return _time_stamp(current_deployment.tsa)


@bp.post("/tsa/sm2")
def sm2_tsa() -> Response:
    """The TSA of the SM2 hierarchy (SM2-with-SM3 signatures; any imprint, SM3 included); 404
    where the deployment has no SM2 hierarchy."""
    return _time_stamp(current_deployment.sm2_tsa)
