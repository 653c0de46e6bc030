"""Fixtures of the card tests (private card token folders, issuers).

Cards are made in the session's Tessera home (`tessera init` prepared its card folder and the
department signers). Everything touching the card tokens runs in subprocesses: the real CLI, or
an outside tool (pkcs11-tool, a plain python-pkcs11 program) with SoftHSM2 pointed at the card's
shard, as a service without the card layer would open it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cardsim.citizens import configured_scheme_name
from cardsim.demo_citizens import demo_citizen

PYTHON = sys.executable
REPO = Path(__file__).resolve().parent.parent


def citizen(i: int, **overrides: str) -> dict[str, str]:
    """A valid application for citizen number ``i`` in the configured scheme (``TESSERA_CITIZEN_ID_SCHEME``,
    default cn-gb11643); distinct identity numbers for distinct i < 10,000."""
    row = demo_citizen(i, configured_scheme_name())
    row.update(overrides)
    return row


@dataclass(frozen=True)
class IssuedCard:
    number: str
    pin: str
    puk: str


def card_env(home: Any, number: str) -> dict[str, str]:
    """The environment of an outside tool (pkcs11-tool, a plain python-pkcs11 program) that opens
    card ``number``: SoftHSM2 pointed at the card's shard."""
    from cardsim.config import CardSettings

    shard = CardSettings.from_env(home.path, {}).shard_of(number)
    return {**home.env, "SOFTHSM2_CONF": str(shard.softhsm_conf)}


def issue_card(home: Any, i: int, tmp: Path, **overrides: str) -> IssuedCard:
    source = tmp / f"citizen-{i}.json"
    source.write_text(json.dumps(citizen(i, **overrides)))
    envelope = tmp / f"envelope-{i}.json"
    home.cli("card", "issue", "--from", str(source), "--envelope", str(envelope))
    data = json.loads(envelope.read_text())
    return IssuedCard(data["card"], data["pin"], data["puk"])


def verify_json(home: Any, number: str, pin: str | None = None, *extra: str) -> dict[str, Any]:
    args = ["card", "verify", number, "--json", *extra] + (["--with-pin"] if pin else [])
    result = home.cli(*args, check=False, input=(pin + "\n").encode() if pin else None)
    assert result.returncode in (0, 2), result.stderr.decode()
    out = json.loads(result.stdout)
    out["reasons"] = {c["check"]: c["reason"] for c in out["checks"] if c["outcome"] == "fail"}
    return out


def on_card(home: Any, number: str, code: str) -> str:
    """Run ``code`` in a process whose SoftHSM2 is the shard of card ``number`` (python-pkcs11 as
    ``pkcs11``, ``lib`` loaded, helper ``token(number)``); returns its standard output."""
    program = textwrap.dedent('''
        import pkcs11, sys
        from pkcs11 import Attribute, ObjectClass
        lib = pkcs11.lib("/usr/lib/softhsm/libsofthsm2.so")
        def token(number):
            return lib.get_token(token_label=number)
    ''') + textwrap.dedent(code)
    result = subprocess.run([PYTHON, "-c", program], env=card_env(home, number), capture_output=True, timeout=120,
                            cwd=REPO)
    if result.returncode != 0:
        raise AssertionError(result.stderr.decode())
    return result.stdout.decode()


def token_folders(home: Any) -> int:
    """Card tokens on disk, every shard."""
    return sum(1 for p in (home.path / "cards" / "shards").glob("*/tokens/*") if p.is_dir())


def registered_cards(home: Any) -> int:
    import sqlite3

    with sqlite3.connect(home.path / "tessera.db") as db:
        return int(db.execute("select count(*) from card").fetchone()[0])


@pytest.fixture(scope="session")
def card_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cards")


@pytest.fixture(scope="session")
def card(home: Any, card_dir: Path) -> IssuedCard:
    """One valid card, only read by the tests that use it."""
    return issue_card(home, 1, card_dir)


@pytest.fixture(scope="session")
def chain_files(home: Any, card_dir: Path) -> Path:
    """root.pem and staff.pem (the departments' CA) for openssl."""
    for name in ("root", "staff", "citizen"):
        pem = home.cli("ca", "export-chain", "--ca", name).stdout
        (card_dir / f"{name}-chain.pem").write_bytes(pem)
        (card_dir / f"{name}.pem").write_bytes(pem.split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n")
    return card_dir
