"""Benchmark only: a Tessera process started with this folder on PYTHONPATH writes no audit entries.

bench/audit_login_overhead.py starts the same service twice, with and without this folder, to
measure what the audit trail adds to a staff login. Nothing in the service knows about it: it
replaces :func:`idp.audit_bridge.install` (which subscribes the trail to the service's security
events) by a function that subscribes nothing. It refuses to act (the trail stays on, a warning
on stderr) unless ``TESSERA_BENCH_AUDIT_OFF=1`` and ``TESSERA_HOME`` lies in a benchmark's
throw-away folder (``tessera-bench-*``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _switch_off() -> None:
    home = Path(os.environ.get("TESSERA_HOME") or "var").resolve()
    if os.environ.get("TESSERA_BENCH_AUDIT_OFF") != "1" or not any(p.name.startswith("tessera-bench-")
                                                                    for p in home.parents):
        print("bench/audit_off: refused (not a benchmark home); the audit trail stays on", file=sys.stderr)
        return
    from idp import audit_bridge

    audit_bridge.install = lambda _trail: None  # type: ignore[assignment]


_switch_off()
