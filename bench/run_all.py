"""Run every benchmark script in bench/ with its default sizes, one after the other (`make bench`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ORDER = ["ca_issuance.py", "ocsp_http.py", "sso_raw_ldap.py", "sso_logins.py", "cards_issue.py",
         "citizen_verification.py", "foreign_verification.py",
         "audit_append.py", "audit_login_overhead.py", "sm2_issuance.py"]


def main() -> int:
    here = Path(__file__).resolve().parent
    failed = []
    for name in ORDER:
        script = here / name
        print(f"\n## {name}\n", flush=True)
        if subprocess.run([sys.executable, str(script)], cwd=here.parent).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
