"""SM2 issuance beside ECDSA, in the same run: certificates per second from CSRs (issue 18).

One SQLite store holds both hierarchies, their CA keys in files (ECDSA P-256: encrypted PKCS#8;
SM2: the sealed SM2 keystore, as the SM2 suite keeps them), so the two columns differ only by
the suite. Each issuance is the full path: CSR parse and self-signature check, profile policy,
certificate built and signed, stored with its cert.issue event in one transaction. The raw
signature rate of each CA key over a certificate's TBS bytes is the limit. Target: SM2 >= 200/s.

Then OCSP in process (no HTTP: bench/ocsp_http.py measures that for ECDSA): RFC 5019 requests
without a nonce (SHA-1 CertID) for the issued certificates are answered once (each response signed
and stored: pre-produced), then answered again from the stored responses; requests with a nonce are
signed fresh each time, so they show the suite's signing cost.

Last, certificate validation as the verification API does it in process
(:class:`verification.certificates.CertificateValidator`, purpose staff-auth): the first sight of
each issued certificate (its path built and checked: cryptography for ECDSA, verification.sm2_paths
with GmSSL for SM2; status from the store) and the same certificates again (path kept), with the
status from the pre-produced OCSP answers, the CA's CRL and the store.

    .venv/bin/python bench/sm2_issuance.py [--count 1000]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000, help="certificates per suite (default 1000)")
    args = parser.parse_args()

    from asn1crypto import csr as asn1_csr
    from asn1crypto import x509 as asn1_x509
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509 import ocsp

    from ca import sm2
    from ca.authority import CertificateAuthority, utc_now
    from ca.hierarchy import HierarchyPlan
    from ca.keyring import Keyring
    from ca.keys import KeyType
    from ca.ocsp import OcspResponder
    from ca.urls import PublicUrls
    from store import schema
    from store.engine import make_engine, make_session_factory
    from verification.certificates import CertificateValidator, load_certificate

    def sm2_csr(common_name: str) -> bytes:
        """A PKCS#10 request signed SM2-with-SM3 by a fresh GmSSL key (what `openssl req -newkey sm2` sends)."""
        private, public = sm2.generate()
        request_info = asn1_csr.CertificationRequestInfo({
            "version": "v1",
            "subject": asn1_x509.Name.build({"common_name": common_name}),
            "subject_pk_info": asn1_csr.PublicKeyInfo.load(public.spki_der()),
            "attributes": [],
        })
        return asn1_csr.CertificationRequest({
            "certification_request_info": request_info,
            "signature_algorithm": {"algorithm": sm2.SM2_WITH_SM3_OID},
            "signature": sm2.sign(private, public, request_info.dump()),
        }).dump()

    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'store.db'}")
        schema.upgrade(engine)
        ca = CertificateAuthority(make_session_factory(engine), Keyring(None, lambda _p: b"bench passphrase 0123"),
                                  PublicUrls("https://pki.gov.example"))
        ca.initialise(HierarchyPlan(backend="file", key_dir=Path(folder) / "keys"))
        ca.initialise(HierarchyPlan(key_type=KeyType.SM2, key_dir=Path(folder) / "keys"))

        ecdsa_csrs = []
        for i in range(args.count):
            private = ec.generate_private_key(ec.SECP256R1())
            ecdsa_csrs.append(x509.CertificateSigningRequestBuilder().subject_name(
                x509.Name.from_rfc4514_string(f"CN=staff {i}")).sign(private, hashes.SHA256())
                .public_bytes(serialization.Encoding.DER))
        sm2_csrs = [sm2_csr(f"staff {i}") for i in range(args.count)]

        rows = []
        for suite, csrs, issuer in (("ECDSA P-256", ecdsa_csrs, "staff"), ("SM2", sm2_csrs, "sm2-staff")):
            first = ca.issue("staff-auth", csrs[0], "bench", subject="CN=warm-up,O=Finance,C=CN")
            tbs = x509.load_der_x509_certificate(first.der).tbs_certificate_bytes
            with ca.sessions() as session:
                key = ca.keyring.get(ca.authority(session, issuer).key_ref)
            start = time.perf_counter()
            for _ in range(args.count):
                key.sign(tbs, key.key_type.signature_hash())
            raw = args.count / (time.perf_counter() - start)
            start = time.perf_counter()
            for i, csr in enumerate(csrs):
                ca.issue("staff-auth", csr, "bench", subject=f"CN=staff {i},O=Finance,C=CN")
            issued = args.count / (time.perf_counter() - start)
            rows.append((suite, raw, issued, f"{issued / raw:.1%}",
                         ("yes" if issued >= 200 else "NO") if suite == "SM2" else "-"))
        responder = OcspResponder(engine, ca.keyring, utc_now)
        ocsp_rows = []
        for suite, issuer in (("ECDSA P-256", "staff"), ("SM2", "sm2-staff")):
            issuer_der = ca.authority_certificate(issuer).public_bytes(serialization.Encoding.DER)
            tbs = asn1_x509.Certificate.load(issuer_der)["tbs_certificate"]
            name_hash = hashlib.sha1(tbs["subject"].dump()).digest()  # noqa: S324  (RFC 5019 CertID)
            key_hash = hashlib.sha1(tbs["subject_public_key_info"]["public_key"].contents[1:]).digest()  # noqa: S324
            serials = [int(c.serial_hex, 16) for c in ca.list_certificates(issuer=issuer, limit=args.count)]

            def request(serial: int, nonce: bool, name_hash: bytes = name_hash, key_hash: bytes = key_hash) -> bytes:
                builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(name_hash, key_hash, serial, hashes.SHA1())
                if nonce:
                    builder = builder.add_extension(x509.OCSPNonce(os.urandom(16)), critical=False)
                return builder.build().public_bytes(serialization.Encoding.DER)

            plain = [request(serial, False) for serial in serials]
            rates = []
            for requests in (plain, plain, [request(serial, True) for serial in serials]):
                start = time.perf_counter()
                for der in requests:
                    assert responder.respond(der).status == "successful"
                rates.append(len(requests) / (time.perf_counter() - start))
            ocsp_rows.append((suite, *rates))
        validator = CertificateValidator.for_deployment(engine, responder)
        verify_rows = []
        for suite, issuer in (("ECDSA P-256", "staff"), ("SM2", "sm2-staff")):
            certificates = [load_certificate(c.der) for c in ca.list_certificates(issuer=issuer, profile="staff-auth",
                                                                                   limit=args.count)]
            rates = []
            # the first pass builds each path; the untimed one has each OCSP answer signed and stored
            for source, timed in (("store", True), ("ocsp", False), ("ocsp", True), ("crl", True), ("store", True)):
                start = time.perf_counter()
                for certificate in certificates:
                    assert validator.validate(certificate, "staff-auth", revocation_source=source).valid
                if timed:
                    rates.append(len(certificates) / (time.perf_counter() - start))
            verify_rows.append((suite, *rates))
        engine.dispose()
    print(table(f"Issuance by suite, CA keys in files, SQLite, one process, {args.count} CSRs each",
                ["suite", "raw CA signatures/s (limit)", "issued/s", "issued / raw", "SM2 >= 200/s"], rows))
    print(table(f"OCSP responses/s in process, SQLite, {args.count} certificates each",
                ["suite", "first answer (signed, stored)", "pre-produced", "with nonce (signed)"], ocsp_rows))
    print(table(f"Certificate validations/s in process (API validator, staff-auth), {args.count} certificates each",
                ["suite", "path built, store", "path kept, OCSP pre-produced", "path kept, CRL",
                 "path kept, store"], verify_rows))


if __name__ == "__main__":
    main()
