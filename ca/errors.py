"""Typed errors of the certificate authority.

The web layer maps each to an HTTP status and an RFC 9457 problem type; the CLI prints the
message as one line and exits non-zero. Messages are written for the person who sent the input.
"""

from __future__ import annotations


class CaError(Exception):
    """Base of every error the CA library raises on purpose."""

    #: short machine-readable kind, used as the last segment of the problem type URI
    kind: str = "ca-error"


class InvalidRequest(CaError):
    """The input (CSR, subject, serial, ...) is malformed or breaks policy."""

    kind = "invalid-request"


class InvalidCsr(InvalidRequest):
    """The CSR cannot be parsed or its self-signature does not verify (RFC 2986 section 3)."""

    kind = "invalid-csr"


class KeyPolicyViolation(InvalidRequest):
    """The public key's type or size is not allowed by the profile."""

    kind = "key-policy"


class SubjectPolicyViolation(InvalidRequest):
    """A subject or subjectAltName value is not allowed by the profile."""

    kind = "subject-policy"


class UnknownProfile(InvalidRequest):
    """No certificate profile has that name."""

    kind = "unknown-profile"


class NotFound(CaError):
    """The certificate, authority or object asked for does not exist."""

    kind = "not-found"


class InvalidStateTransition(CaError):
    """The operation does not apply to the object's current state (e.g. revoking twice)."""

    kind = "invalid-state"


class KeyUnavailable(CaError):
    """A signing key cannot be reached: token missing, wrong PIN, file unreadable."""

    kind = "key-unavailable"


class NotInitialised(CaError):
    """The CA hierarchy has not been created yet (run `tessera init`)."""

    kind = "not-initialised"
