"""Verification: the one place that validates certificates, certification paths, CRLs, OCSP
answers, CMS SignedData and signatures, for the API, the card reader, citizen login and audit
verification alike (RFC 5280, RFC 6960, RFC 5652). Layer 2: it may use ``ca`` and ``store``."""
