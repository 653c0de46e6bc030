"""`python -m demo`: run the demo departmental application beside Tessera."""

from __future__ import annotations

import argparse
from pathlib import Path

from werkzeug.serving import run_simple

from demo.app import create_app
from demo.config import DemoConfig


def main() -> None:
    parser = argparse.ArgumentParser(description="Demo departmental application (an OpenID Connect relying party).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--issuer", default="http://127.0.0.1:5000", help="Tessera's public URL (the OIDC issuer).")
    parser.add_argument("--client-file", required=True, type=Path, help="JSON from `tessera client add --json`.")
    args = parser.parse_args()
    config = DemoConfig.from_client_file(args.client_file, args.issuer, f"http://{args.host}:{args.port}")
    print(f"Demo departmental application on http://{args.host}:{args.port}/ (provider {config.issuer})", flush=True)
    run_simple(args.host, args.port, create_app(config), threaded=True)


if __name__ == "__main__":
    main()
