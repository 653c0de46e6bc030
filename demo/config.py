"""The demo application's settings: where the provider is and its client registration."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class DemoConfig:
    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    base_url: str
    scope: str = "openid profile email department roles"

    @property
    def redirect_uri(self) -> str:
        return self.base_url + "/callback"

    @classmethod
    def from_client_file(cls, path: Path, issuer: str, base_url: str) -> "DemoConfig":
        """The JSON printed by `tessera client add --json`."""
        data = json.loads(path.read_text())
        return cls(issuer=issuer.rstrip("/"), client_id=data["client_id"], client_secret=data["client_secret"],
                   base_url=base_url.rstrip("/"))

    @classmethod
    def from_env(cls) -> "DemoConfig":
        env = os.environ
        base = env.get("DEMO_BASE_URL", "http://127.0.0.1:5001")
        issuer = env.get("DEMO_ISSUER", "http://127.0.0.1:5000")
        if env.get("DEMO_CLIENT_FILE"):
            return cls.from_client_file(Path(env["DEMO_CLIENT_FILE"]), issuer, base)
        return cls(issuer=issuer.rstrip("/"), client_id=env["DEMO_CLIENT_ID"], client_secret=env["DEMO_CLIENT_SECRET"],
                   base_url=base.rstrip("/"))
