"""The OpenAPI 3.1 description of the verification API (served at ``/api/v1/openapi.json``)."""

from __future__ import annotations

from typing import Any

from idp.verification_api.authentication import SCOPE
from idp.verification_api.inputs import HASHES, MAX_BATCH, MAX_POLICIES, PURPOSES, SOURCES


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


def document(public_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 description of ``/api/v1`` (served at ``/api/v1/openapi.json``)."""
    problem_ref = {"$ref": "#/components/responses/Problem"}
    security: list[dict[str, list[str]]] = [{"serviceAssertion": []}, {"serviceAccount": [SCOPE]}]
    time_field = {"type": "string", "format": "date-time", "description": "validation time (RFC 3339), default now"}
    source = {"type": "string", "enum": list(SOURCES), "default": "ocsp",
              "description": "where revocation status comes from: our OCSP responder, the latest CRL, or the store"}
    cert_text = {"type": "string", "minLength": 1, "maxLength": 65536, "description": "PEM or base64 DER"}
    chain = {"type": "array", "maxItems": 8, "items": cert_text, "description": "intermediates (optional)"}
    bound = " A trust-list anchor's own policies stay the outer bound (the set asked is intersected with them)."
    policy_inputs = {
        "policies": {"type": "array", "maxItems": MAX_POLICIES,
                     "items": {"type": "string", "pattern": r"^[0-2](\.[0-9]+)+$", "maxLength": 128},
                     "description": "user-initial-policy-set (RFC 5280 section 6.1.1 (c)), dotted OIDs; empty or "
                                    "anyPolicy (2.5.29.32.0): any policy. With explicit_policy, on Tessera's own hierarchy "
                                    "too, the certificate's policies must meet it." + bound},
        "explicit_policy": {"type": "boolean", "default": False,
                            "description": "initial-explicit-policy (section 6.1.1 (f)): the path must be valid for "
                                           "a policy of the set"},
        "policy_mapping_inhibit": {"type": "boolean", "default": False,
                                   "description": "initial-policy-mapping-inhibit (section 6.1.1 (e)); for foreign "
                                                  "anchors"},
        "any_policy_inhibit": {"type": "boolean", "default": False,
                               "description": "initial-any-policy-inhibit (section 6.1.1 (g)); for foreign anchors"}}
    requests = {
        "CertificateRequest": {"type": "object", "additionalProperties": False, "required": ["certificate", "purpose"],
                               "properties": {"certificate": cert_text, "chain": chain, "at": time_field,
                                              "purpose": {"type": "string", "enum": list(PURPOSES)},
                                              "revocation_source": source, **policy_inputs}},
        "SignedRecordRequest": {"type": "object", "additionalProperties": False, "required": ["record"],
                                "properties": {"record": {"type": "string", "minLength": 1, "maxLength": 262144,
                                                          "contentEncoding": "base64",
                                                          "description": "CMS SignedData (RFC 5652), DER, base64"},
                                               "at": time_field, "revocation_source": source}},
        "SignatureRequest": {"type": "object", "additionalProperties": False,
                             "required": ["signature", "certificate"],
                             "description": "exactly one of data and digest",
                             "properties": {"data": {"type": "string", "minLength": 1, "contentEncoding": "base64"},
                                            "digest": {"type": "string", "minLength": 1, "maxLength": 128,
                                                       "contentEncoding": "base64"},
                                            "hash_algorithm": {"type": "string", "enum": list(HASHES),
                                                               "default": "sha256"},
                                            "signature": {"type": "string", "minLength": 1, "maxLength": 4096,
                                                          "contentEncoding": "base64",
                                                          "description": "ECDSA (DER or raw r||s), RSA PKCS#1 v1.5, "
                                                                         "or SM2 (DER or raw r||s, GB/T 32918.2) with "
                                                                         "hash_algorithm sm3: over data, Z (signer identity "
                                                                         "1234567812345678, or the empty one) is hashed in; a "
                                                                         "digest is e = SM3(Z || M)"},
                                            "certificate": cert_text, "chain": chain, "at": time_field,
                                            "purpose": {"type": "string", "enum": list(PURPOSES), "default": "signing"},
                                            "revocation_source": source}},
    }
    reason = {"type": "object", "required": ["code", "detail"],
              "properties": {"code": {"type": "string"}, "detail": {"type": "string"}}}
    subject = {"type": "object", "required": ["dn"], "properties": {
        "dn": {"type": "string"}, **{k: _nullable("string") for k in (
            "common_name", "given_name", "surname", "organization", "serial_number", "national_id")}}}
    verdict = {"type": "object",
               "required": ["valid", "purpose", "reasons", "subject", "profile", "chain", "revocation"],
               "properties": {
                   "valid": {"type": "boolean"}, "purpose": {"type": "string", "enum": list(PURPOSES)},
                   "reasons": {"type": "array", "items": {"$ref": "#/components/schemas/Reason"}},
                   "subject": {"oneOf": [{"$ref": "#/components/schemas/Subject"}, {"type": "null"}]},
                   "profile": _nullable("string"), "serial": _nullable("string"),
                   "not_before": _nullable("string", format="date-time"),
                   "not_after": _nullable("string", format="date-time"),
                   "chain": {"type": "array", "items": {"type": "object", "required": ["subject", "serial", "sha256"],
                                                         "properties": {"subject": {"type": "string"},
                                                                        "serial": {"type": "string"},
                                                                        "sha256": {"type": "string"}}}},
                   "revocation": {"type": "object", "required": ["status", "source"], "properties": {
                       "status": {"type": "string", "enum": ["good", "revoked", "unknown"]},
                       "source": {"type": "string", "enum": [*SOURCES, "none"]},
                       "checked_at": _nullable("string", format="date-time"),
                       "revoked_at": _nullable("string", format="date-time"),
                       "reason": _nullable("string"), "detail": {"type": "string"}}},
                   "validated_at": _nullable("string", format="date-time")}}
    results = {
        "CertificateVerdict": verdict,
        "SignedRecordVerdict": {"type": "object", "required": ["valid", "reasons", "signer", "content"], "properties": {
            "valid": {"type": "boolean"},
            "reasons": {"type": "array", "items": {"$ref": "#/components/schemas/Reason"}},
            "signer": {"oneOf": [{"$ref": "#/components/schemas/CertificateVerdict"}, {"type": "null"}]},
            "content": _nullable("string"), "content_json": {"type": ["object", "array", "null"]},
            "signing_time": _nullable("string", format="date-time")}},
        "SignatureVerdict": {"type": "object", "required": ["valid", "reasons", "signer"], "properties": {
            "valid": {"type": "boolean"},
            "reasons": {"type": "array", "items": {"$ref": "#/components/schemas/Reason"}},
            "signer": {"$ref": "#/components/schemas/CertificateVerdict"}}},
    }

    def operation(summary: str, request_schema: str, result: str, batch: bool) -> dict[str, Any]:
        req: dict[str, Any] = {"$ref": f"#/components/schemas/{request_schema}"}
        res: dict[str, Any] = {"$ref": f"#/components/schemas/{result}"}
        if batch:
            req = {"type": "object", "additionalProperties": False, "required": ["items"],
                   "properties": {"items": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": req}}}
            res = {"type": "object", "required": ["results"],
                   "properties": {"results": {"type": "array", "items": res}}}
        return {"post": {
            "summary": summary + (" (batch)" if batch else ""), "security": security,
            "requestBody": {"required": True, "content": {"application/json": {"schema": req}}},
            "responses": {"200": {"description": "the verdict", "content": {"application/json": {"schema": res}}},
                          "400": problem_ref, "401": problem_ref, "403": problem_ref, "413": problem_ref,
                          "429": problem_ref}}}

    paths: dict[str, Any] = {}
    for path, summary, req_name, res_name in (
            ("/certificates", "Verify a certificate for a purpose", "CertificateRequest", "CertificateVerdict"),
            ("/signed-records", "Verify a signed record (CMS SignedData)", "SignedRecordRequest",
             "SignedRecordVerdict"),
            ("/signatures", "Verify a signature over data or its hash", "SignatureRequest", "SignatureVerdict")):
        paths[path + "/verify"] = operation(summary, req_name, res_name, False)
        paths[path + "/verify-batch"] = operation(summary, req_name, res_name, True)
    paths["/openapi.json"] = {"get": {"summary": "This description", "security": [], "responses": {"200": {
        "description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tessera verification API", "version": "1.0.0",
                 "description": "Certificates, signed records and signatures verified against the Tessera PKI. "
                                "Errors are RFC 9457 problem details."},
        "servers": [{"url": public_url + "/api/v1"}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "serviceAssertion": {
                    "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "A JWT (ES256/ES384/RS256/PS256) signed by the service's key, its `service` "
                                   "certificate chain in the x5c header, aud = this API's URL, exp - iat <= 600 s."},
                "serviceAccount": {
                    "type": "oauth2",
                    "description": "A service account's access token from the IdP (client credentials, RFC 6749 "
                                   "section 4.4), sent as `Authorization: Bearer <token>`.",
                    "flows": {"clientCredentials": {"tokenUrl": public_url + "/oidc/token",
                                                    "scopes": {SCOPE: "verify certificates, signed records and "
                                                                      "signatures"}}}}},
            "schemas": {**requests, **results, "Reason": reason, "Subject": subject,
                        "Problem": {"type": "object", "required": ["type", "title", "status"], "properties": {
                            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                            "detail": {"type": "string"}, "instance": {"type": "string"}}}},
            "responses": {"Problem": {"description": "RFC 9457 problem details",
                                      "content": {"application/problem+json": {
                                          "schema": {"$ref": "#/components/schemas/Problem"}}}}},
        },
        "security": security,
    }

