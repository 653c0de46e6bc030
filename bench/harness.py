"""What the benchmark scripts share: a throw-away CA home on a private SoftHSM2 token, result tables.

Benchmarks run by hand (`make bench` or `.venv/bin/python bench/<name>.py`), never in CI. Each prints a
table whose ratios compare Tessera with the raw limit and with a peer measured in the same run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# servers and commands start as in production, not forked from the test suite's fork server
# (tests/forkserver.py): a benchmark measures the process an operator runs
os.environ.setdefault("TESSERA_TEST_FORKSERVER", "0")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from idp.deployment import Deployment  # noqa: E402
from idp.settings import Settings  # noqa: E402
from tests.servers import tessera_env  # noqa: E402


def ca_home(database_url: str | None = None, base: Path | None = None) -> Deployment:
    """A fresh home made by the real `tessera init` (CA keys on its own SoftHSM2 token), opened in process.

    One per process: SoftHSM reads SOFTHSM2_CONF once, when the process first initialises it.
    """
    home = Path(tempfile.mkdtemp(prefix="tessera-bench-", dir=base))
    env = tessera_env(home)
    if database_url:
        env["TESSERA_DATABASE_URL"] = database_url
    subprocess.run([str(Path(sys.executable).parent / "tessera"), "init"], env=env, check=True, capture_output=True)
    settings = Settings.from_env(home, env)
    os.environ["SOFTHSM2_CONF"] = str(settings.softhsm_conf)
    return Deployment(settings)


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table (also valid Markdown) for closing notes."""
    cells = [[str(c) for c in header]] + [[f"{c:,.1f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [f"### {title}", "| " + " | ".join(h.ljust(w) for h, w in zip(cells[0], widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells[1:]]
    return "\n".join(lines)
