"""The verification API's blueprint, ``/api/v1``: each call authenticated, rate limited, verified
and recorded, then answered in JSON (errors as RFC 9457 problems); :func:`install` sets up the
per-process state."""

from __future__ import annotations

import json  # the standard library's: Flask's provider sorts keys and goes through the app context
import os
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, request

from idp.citizen_blueprints import services
from idp.json_input import JsonInputError, parse_json
from idp.problems import problem
from idp.verification_api.authentication import SCOPE, InsufficientScope, ServiceAuthenticator, ServiceIdentity
from idp.verification_api.group_commit import GroupCommit, Ticket, record, write_calls
from idp.verification_api.inputs import MAX_BATCH, BadInput, json_object
from idp.verification_api.openapi import document
from idp.verification_api.rate_limit import RateLimiter
from idp.verification_api.verifications import verify_certificate, verify_signature, verify_signed_record

bp = Blueprint("verification_api", __name__, url_prefix="/api/v1")

#: a batch of 100 certificates with chains is larger than the service-wide request limit
MAX_BATCH_BYTES = 4 * 1024 * 1024

_OPERATIONS = {"certificate": verify_certificate, "signed-record": verify_signed_record, "signature": verify_signature}


def _authenticated(cost: int) -> ServiceIdentity | Response:
    state = _state()
    try:
        identity = state.authenticator.authenticate(request.headers.get("Authorization"))
    except InsufficientScope as exc:
        response = problem(403, "Insufficient scope", str(exc), "api/insufficient-scope")
        response.headers["WWW-Authenticate"] = (f'Bearer realm="tessera-api", error="insufficient_scope", '
                                                f'scope="{SCOPE}"')
        return response
    except PermissionError as exc:
        response = problem(401, "Service authentication required", str(exc), "api/unauthenticated")
        response.headers["WWW-Authenticate"] = 'Bearer realm="tessera-api"'
        return response
    wait = state.limiter.take(identity.rate_key, cost)
    if wait > 0:
        response = problem(429, "Too many requests", f"rate limit of {state.limiter.rate():g}/s for {identity.name}",
                           "api/rate-limited")
        response.headers["Retry-After"] = str(max(1, int(wait + 0.999)))
        return response
    return identity


def _json_body() -> Any:
    """The request's JSON (bounded: :mod:`idp.json_input`)."""
    if request.mimetype != "application/json":
        raise BadInput("send application/json")
    try:
        return parse_json(request.get_data(cache=False))
    except JsonInputError as exc:
        raise BadInput(str(exc)) from None


def _single(operation: str) -> Response:
    with _state().recorder.ticket() as ticket:
        return _single_call(ticket, operation)


def _single_call(ticket: Ticket, operation: str) -> Response:
    identity = _authenticated(1)
    if isinstance(identity, Response):
        return identity
    try:
        outcome = _OPERATIONS[operation](_json_body())
    except BadInput as exc:
        return problem(400, "Bad request", str(exc), "api/bad-request")
    record(ticket, identity, operation, [outcome])
    return Response(json.dumps(outcome.body), mimetype="application/json")


def _batch(operation: str) -> Response:
    with _state().recorder.ticket() as ticket:
        return _batch_call(ticket, operation)


def _batch_call(ticket: Ticket, operation: str) -> Response:
    try:
        body = _json_body()
        body = json_object(body, {"items"}, {"items"})
        items = body["items"]
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
            raise BadInput(f"items must be a list of 1 to {MAX_BATCH} requests")
    except BadInput as exc:
        identity = _authenticated(1)
        if isinstance(identity, Response):
            return identity
        return problem(400, "Bad request", str(exc), "api/bad-request")
    identity = _authenticated(len(items))
    if isinstance(identity, Response):
        return identity
    outcomes = []
    for i, item in enumerate(items):
        try:
            outcomes.append(_OPERATIONS[operation](item))
        except BadInput as exc:
            return problem(400, "Bad request", f"items[{i}]: {exc}", "api/bad-request")
    record(ticket, identity, operation, outcomes)
    return Response(json.dumps({"results": [o.body for o in outcomes]}), mimetype="application/json")


@bp.before_request
def _batch_size() -> None:
    if request.endpoint and request.endpoint.endswith("_batch"):
        request.max_content_length = MAX_BATCH_BYTES


@bp.after_request
def _no_store(response: Response) -> Response:
    """Verdicts name citizens (subject, national id, record content): no cache may keep an answer
    (RFC 9111 section 5.2.2.5), errors included; the OpenAPI description sets its own."""
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.post("/certificates/verify")
def certificate() -> Response:
    return _single("certificate")


@bp.post("/certificates/verify-batch")
def certificate_batch() -> Response:
    return _batch("certificate")


@bp.post("/signed-records/verify")
def signed_record() -> Response:
    return _single("signed-record")


@bp.post("/signed-records/verify-batch")
def signed_record_batch() -> Response:
    return _batch("signed-record")


@bp.post("/signatures/verify")
def signature() -> Response:
    return _single("signature")


@bp.post("/signatures/verify-batch")
def signature_batch() -> Response:
    return _batch("signature")


@bp.get("/openapi.json")
def openapi() -> Response:
    response = Response(json.dumps(document(services().deployment.settings.public_url)), mimetype="application/json")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@dataclass
class _ApiState:
    authenticator: ServiceAuthenticator
    limiter: RateLimiter
    recorder: GroupCommit


def _state() -> _ApiState:
    from flask import current_app

    return current_app.extensions["tessera.api"]


def install(app: Flask) -> None:
    """Per-process state; the API's endpoints carry no cookies, so CSRF does not apply to them."""
    from idp import csrf

    deployment = app.extensions["tessera"]
    runtime = deployment.runtime
    burst = os.environ.get("TESSERA_API_RATE_BURST")
    provider = app.extensions["tessera.oidc"]
    authenticator = ServiceAuthenticator(provider.service_audience, provider.issuer, provider.keys.key_set,
                                         provider.tokens.service_token)
    limiter = RateLimiter(deployment.engine, lambda: runtime.get("api.rate_per_second"),
                          float(burst) if burst else None)
    app.extensions["tessera.api"] = _ApiState(authenticator, limiter, GroupCommit(write_calls))
    csrf.EXEMPT.update({"verification_api." + name for name in (
        "certificate", "certificate_batch", "signed_record", "signed_record_batch", "signature", "signature_batch")})

