"""The ``tessera`` command's groups beyond the CA's own, one module per domain area."""
