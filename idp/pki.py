"""HTTP endpoints of the PKI: CA certificates, CRLs, OCSP (RFC 6960), time-stamping (RFC 3161).

Media types: application/pkix-cert and application/pkix-crl (RFC 2585 section 4),
application/ocsp-request/-response (RFC 6960 appendix C), application/timestamp-query/-reply
(RFC 3161 section 4).
"""

from __future__ import annotations

import base64
import binascii
import datetime
from email.utils import format_datetime

from cryptography.hazmat.primitives.serialization import Encoding
from flask import Blueprint, Response, current_app, request

from idp.deployment import Deployment
from idp.problems import problem

bp = Blueprint("pki", __name__)


def deployment() -> Deployment:
    return current_app.extensions["tessera"]  # type: ignore[no-any-return]


@bp.get("/ca/<name>.crt")
def ca_certificate(name: str) -> Response:
    """The caIssuers URL (RFC 5280 section 4.2.2.1): one DER certificate."""
    cert = deployment().ca.authority_certificate(name)
    return Response(cert.public_bytes(Encoding.DER), mimetype="application/pkix-cert",
                    headers={"Cache-Control": "public, max-age=86400"})


@bp.get("/ca/<name>/chain.pem")
def ca_chain(name: str) -> Response:
    """The authority's certificate and its parents up to the root, PEM."""
    chain = deployment().ca.chain(name)
    return Response(b"".join(c.public_bytes(Encoding.PEM) for c in chain), mimetype="application/pem-certificate-chain")


@bp.get("/crl/<name>.crl")
def crl(name: str) -> Response:
    """The CDP URL (RFC 5280 section 4.2.1.13): the current full CRL, DER."""
    current = deployment().ca.current_crl(name)
    max_age = max(0, int((current.next_update - deployment().now()).total_seconds()) // 4)
    return Response(current.der, mimetype="application/pkix-crl", headers={
        "Cache-Control": f"public, max-age={max_age}",
        "Last-Modified": format_datetime(current.this_update, usegmt=True),
        "Expires": format_datetime(current.next_update, usegmt=True),
    })


def _ocsp_response(request_der: bytes) -> Response:
    reply = deployment().ocsp.respond(request_der)
    headers: dict[str, str] = {}
    if reply.next_update is not None and reply.this_update is not None:
        # RFC 5019 section 6.2: let HTTP caches keep nonce-less answers, but never past nextUpdate
        seconds = max(0, int((reply.next_update - deployment().now()).total_seconds()))
        headers = {
            "Cache-Control": f"max-age={min(seconds, 300)}, public, no-transform, must-revalidate",
            "Last-Modified": format_datetime(reply.this_update, usegmt=True),
            "Expires": format_datetime(min(reply.next_update, deployment().now() + datetime.timedelta(seconds=300)), usegmt=True),
        }
    else:
        headers = {"Cache-Control": "no-store"}
    return Response(reply.der, mimetype="application/ocsp-response", headers=headers)


@bp.post("/ocsp")
@bp.post("/ocsp/<name>")
def ocsp_post(name: str | None = None) -> Response:
    """OCSP over HTTP POST (RFC 6960 appendix A.1). A bad request gets malformedRequest."""
    if request.mimetype != "application/ocsp-request":
        return problem(415, "Unsupported Media Type", "send an application/ocsp-request body", "media-type")
    return _ocsp_response(request.get_data(cache=False))


@bp.get("/ocsp/<name>/<path:encoded>")
def ocsp_get(name: str, encoded: str) -> Response:
    """OCSP over HTTP GET: the base64 DER request, URL-encoded, in the path (appendix A.1)."""
    try:
        der = base64.b64decode(encoded.replace("-", "+").replace("_", "/"), validate=False)
    except (binascii.Error, ValueError):
        der = b""
    return _ocsp_response(der)


@bp.post("/tsa")
def tsa() -> Response:
    """Time-stamp protocol via HTTP (RFC 3161 section 3.4)."""
    if request.mimetype != "application/timestamp-query":
        return problem(415, "Unsupported Media Type", "send an application/timestamp-query body", "media-type")
    reply = deployment().tsa.respond(request.get_data(cache=False))
    return Response(reply.der, status=reply.http_status, mimetype="application/timestamp-reply")
