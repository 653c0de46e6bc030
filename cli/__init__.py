"""The ``tessera`` command: :mod:`cli.main` is the entry point (set-up, serving, the CA's own
commands); every other module is one command group, thin over the packages below it (the CA, the
directory, cards, the audit trail, the identity provider's stores)."""
