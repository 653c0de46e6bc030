"""The card reader's certification path validation to a fixed set of roots (RFC 5280 section 6),
through ``cryptography.x509.verification``, with the CA part of a path kept between the cards of
one CA. A certificate signed SM2-with-SM3 is validated to the SM2 roots among the given ones by
:mod:`verification.sm2_paths` (cryptography has no SM2). Revocation is not checked here:
:mod:`verification.crl_status` and :mod:`verification.ocsp_status` do it for the path this returns."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from cryptography import x509
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

from verification.reasons import Check
from verification.sm2_paths import is_sm2_certificate, validate_sm2_path


class ChainValidator:
    """Path validation to a fixed set of roots (cryptography.x509.verification).

    The CA part of a path is shared by every certificate its CA issued (thousands of cards, one
    citizen CA): once a certificate has validated through the whole path (RFC 5280 section 6.1:
    CA policy, signatures, validity), the CAs above it are kept, with the period in which all of
    them are valid. A later certificate from the same issuer is then validated by the same
    verifier with its issuer as the anchor: its own signature, validity and policy, the per
    certificate part, are checked in full every time. Only CAs without name constraints are kept
    (an anchor's constraints would not be applied); anything that does not validate that way is
    validated along the whole path again, so failures read as they always did."""

    def __init__(self, roots: Sequence[x509.Certificate]) -> None:
        self._sm2_roots = [root for root in roots if is_sm2_certificate(root)]
        others = [root for root in roots if not is_sm2_certificate(root)]
        self._store = Store(others) if others else None
        self._builders: dict[datetime.datetime, PolicyBuilder] = {}
        #: DER of an issuer's name -> [(issuer, the CAs from it to the root, a store of the issuer,
        #: start and end of the path's validity)]
        self._issuers: dict[bytes, list[tuple[x509.Certificate, tuple[x509.Certificate, ...], Store,
                                              datetime.datetime, datetime.datetime]]] = {}
        self._issuer_builders: dict[tuple[bytes, int, datetime.datetime], PolicyBuilder] = {}

    @staticmethod
    def _builder(store: Store, at: datetime.datetime) -> PolicyBuilder:
        # Web PKI rules for the CAs; end entities here (card, department certificates) carry no
        # subjectAltName, so their extensions are checked by the caller (key usage, EKU)
        return (PolicyBuilder().store(store).time(at)
                .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                                    ee_policy=ExtensionPolicy.permit_all()))

    def _verifier(self, at: datetime.datetime) -> object:
        at = at.replace(microsecond=0)
        builder = self._builders.get(at)
        if builder is None:
            if self._store is None:
                raise VerificationError("no trust anchor of the certificate's suite is configured")
            builder = self._builder(self._store, at)
            self._builders = {at: builder}
        return builder.build_client_verifier()

    def _keep_issuer(self, chain: Sequence[x509.Certificate]) -> None:
        """Keep the CA part of a validated ``chain`` (leaf, issuer, ..., root)."""
        cas = tuple(chain[1:])
        if len(cas) < 2:  # issued by a root: the whole path is the short one already
            return
        for ca in cas:
            try:
                ca.extensions.get_extension_for_class(x509.NameConstraints)
                return
            except x509.ExtensionNotFound:
                pass
        issuer = cas[0]
        key = issuer.subject.public_bytes()
        kept = self._issuers.setdefault(key, [])
        if any(entry[0] == issuer for entry in kept) or len(kept) >= 8:
            return
        kept.append((issuer, cas, Store([issuer]), max(c.not_valid_before_utc for c in cas),
                     min(c.not_valid_after_utc for c in cas)))

    def _by_kept_issuer(self, leaf: x509.Certificate, at: datetime.datetime) -> list[x509.Certificate] | None:
        """The whole path (leaf, the kept issuer, ..., root) through a kept issuer, or None when none
        validates ``leaf`` that way."""
        name = leaf.issuer.public_bytes()
        kept = self._issuers.get(name)
        if not kept:
            return None
        at = at.replace(microsecond=0)
        for index, (_issuer, cas, store, valid_from, valid_until) in enumerate(kept):
            if not valid_from <= at <= valid_until:
                continue
            builder = self._issuer_builders.get((name, index, at))
            if builder is None:
                if len(self._issuer_builders) > 64:
                    self._issuer_builders.clear()
                builder = self._issuer_builders[(name, index, at)] = self._builder(store, at)
            try:
                builder.build_client_verifier().verify(leaf, [])
            except (VerificationError, ValueError):
                continue
            return [leaf, *cas]
        return None

    def validate_path(self, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate],
                      at: datetime.datetime, name: str = "chain",
                      eku: x509.ObjectIdentifier | None = None) -> tuple[Check, list[x509.Certificate] | None]:
        """RFC 5280 section 6 path validation at ``at``; ``eku`` is required when given. With the
        path on success: the leaf, its issuer and the CAs up to the root (each to be asked for
        its status, :meth:`verification.crl_status.CrlStatus.path_status`)."""
        chain: list[x509.Certificate] | None
        if is_sm2_certificate(leaf):
            outcome = validate_sm2_path(leaf, intermediates, self._sm2_roots, at)
            if not outcome.valid:
                first = outcome.reasons[0]
                expired = first.code != "untrusted-issuer" or " expired on " in first.detail \
                    or " is valid from " in first.detail
                return Check(name, False, "expired" if expired else "untrusted", first.detail[:200]), None
            chain = list(outcome.path)
        else:
            chain = self._by_kept_issuer(leaf, at)
        if chain is None:
            try:
                chain = list(self._verifier(at).verify(leaf, list(intermediates)).chain)  # type: ignore[attr-defined]
            except VerificationError as exc:
                text = str(exc)
                reason = "expired" if "expired" in text or "not valid" in text else "untrusted"
                return Check(name, False, reason, text[:200]), None
            except ValueError as exc:
                return Check(name, False, "untrusted", str(exc)[:200]), None
            self._keep_issuer(chain)
        if eku is not None:
            try:
                usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
                if eku not in usages:
                    return Check(name, False, "wrong-purpose", "the certificate lacks the required extended key usage"), None
            except x509.ExtensionNotFound:
                return Check(name, False, "wrong-purpose", "the certificate has no extended key usage"), None
        return Check(name, True), chain

    def validate(self, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate],
                 at: datetime.datetime, name: str = "chain", eku: x509.ObjectIdentifier | None = None) -> Check:
        """RFC 5280 section 6 path validation at ``at``; ``eku`` is required when given."""
        return self.validate_path(leaf, intermediates, at, name, eku)[0]
