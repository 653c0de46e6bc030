"""The tamper-evident audit trail: hash-chained entries, signed checkpoints, verification, export."""
