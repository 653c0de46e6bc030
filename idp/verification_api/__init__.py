"""The verification API for services, ``/api/v1`` (JSON in and out, OpenAPI 3.1, RFC 9457 errors).

* ``POST /api/v1/certificates/verify``: is this certificate valid now (or at a time) for a purpose
  (staff-auth, citizen-auth, signing, service)? Every reason, the chain, subject, profile and the
  revocation status with time, reason and source (:mod:`verification.certificates`).
* ``POST /api/v1/signed-records/verify``: a CMS SignedData (RFC 5652) with id-data content:
  signature, the signer's certificate (purpose ``signing``), the content.
* ``POST /api/v1/signatures/verify``: a signature over data or its hash with a certificate.
* ``.../verify-batch`` of each (at most :data:`~idp.verification_api.inputs.MAX_BATCH` items).

Modules: :mod:`~idp.verification_api.authentication` (service certificates and service accounts),
:mod:`~idp.verification_api.rate_limit`, :mod:`~idp.verification_api.inputs` (request bodies),
:mod:`~idp.verification_api.verifications`, :mod:`~idp.verification_api.group_commit` (the
verification log and audit, committed before the answer), :mod:`~idp.verification_api.endpoints`
(the blueprint) and :mod:`~idp.verification_api.openapi` (the description).
"""

from idp.verification_api.endpoints import bp, install

__all__ = ["bp", "install"]
