"""Card shards: each card's token lives in the SoftHSM2 folder its number names, every process
finds it there without a scan, and a card folder made before shards is moved into them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from cardsim.config import CardSettings
from cardsim.errors import CardConfigurationError
from cardsim.numbers import PREFIX, luhn_digit, shard_of
from cardsim.shard_migration import migrate
from tests.conftest import TESSERA, Home
from tests.fixtures_cards import PYTHON, REPO, citizen, verify_json


def legacy_number(digits: str) -> str:
    """A card number of the pre-shard layout (nine random digits after the prefix)."""
    payload = PREFIX + digits
    return payload + luhn_digit(payload)


def init_token(conf: Path, label: str) -> None:
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", "12345678",
                    "--pin", "123456"], env={"SOFTHSM2_CONF": str(conf), "PATH": "/usr/bin:/bin"},
                   check=True, capture_output=True)


def labels_in(settings: CardSettings, numbers: list[str]) -> list[str]:
    """Open each card the way a reader does, in a fresh process: its shard, its label index."""
    program = f"""
import pathlib
from cardsim.config import CardSettings
from cardsim.shard_module import ShardLibrary
settings = CardSettings.from_env(pathlib.Path("/nonexistent"), {{"TESSERA_CARD_DIR": {str(settings.folder)!r}}})
for number in {numbers!r}:
    library = ShardLibrary(settings.shard_of(number), settings.module_path)
    print(number in library.tokens, len(library.tokens))
"""
    out = subprocess.run([PYTHON, "-c", program], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_a_pre_shard_card_folder_is_refused_until_init_moves_its_cards(tmp_path: Path) -> None:
    settings = CardSettings.from_env(tmp_path, {"TESSERA_CARD_DIR": str(tmp_path / "cards")})
    legacy = settings.folder / "tokens"
    legacy.mkdir(parents=True)
    conf = settings.folder / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {legacy}\nobjectstore.backend = file\nlog.level = ERROR\n")
    numbers = [legacy_number("123456789"), legacy_number("123000001"), legacy_number("987654321")]
    for label in [*numbers, "not-a-card"]:
        init_token(conf, label)
    with pytest.raises(CardConfigurationError, match="tessera init"):
        settings.require()

    done = migrate(settings)
    assert "moved 3 card token(s)" in done[0] and "1 token folder(s) that are not cards" in done[1]
    settings.require()  # no longer refused
    assert not legacy.exists() and not conf.exists()
    assert {s.index for s in settings.existing_shards()} == {0, 123, 987}
    assert shard_of(numbers[0]) == shard_of(numbers[1]) == 123
    # each card is in its shard, found by its number; the two of shard 123 share it
    assert labels_in(settings, numbers) == ["True", "2", "True", "2", "True", "1"]
    assert migrate(settings) == []  # done once


def test_a_full_shard_sends_new_cards_to_the_next_and_every_command_finds_them(home: Home, card_dir: Path) -> None:
    capacity = {"TESSERA_CARD_SHARD_CAPACITY": "2"}
    cards = []
    for i in range(3):
        source = card_dir / f"sharded-{i}.json"
        source.write_text(json.dumps(citizen(300 + i)))
        envelope = card_dir / f"sharded-envelope-{i}.json"
        subprocess.run([TESSERA, "card", "issue", "--from", str(source), "--envelope", str(envelope)],
                       env={**home.env, **capacity}, check=True, capture_output=True, timeout=120)
        cards.append(json.loads(envelope.read_text()))
    shards = [shard_of(c["card"]) for c in cards]
    # two cards per shard: three cards span exactly two shards, and the newer one was opened for them
    assert shards == sorted(shards) and shards[2] == shards[0] + 1
    newest = home.path / "cards" / "shards" / f"{shards[2]:03d}" / "tokens"
    assert sum(1 for _ in newest.iterdir()) == shards.count(shards[2])
    first, last = cards[0], cards[2]
    assert verify_json(home, last["card"], last["pin"])["ok"]
    change = subprocess.run([TESSERA, "card", "change-pin", first["card"]], env=home.env, capture_output=True,
                            input=f"{first['pin']}\n13572468\n".encode(), timeout=120)
    assert change.returncode == 0, change.stderr
    assert verify_json(home, first["card"], "13572468")["ok"]
    home.cli("card", "lost", last["card"])
    assert verify_json(home, last["card"])["reasons"]["registry"] == "card-lost"


def test_a_token_deleted_by_another_process_does_not_break_the_next_card(home: Home, card_dir: Path) -> None:
    """SoftHSM2 fails (CKR_GENERAL_ERROR) after another process adds and deletes a token in a
    folder it holds open, as a writer undoing a half-made card does beside the others: the writer
    re-initialises the shard and goes on."""
    program = """
import sys
from cardsim.citizens import parse_application
from cardsim.config import CardSettings
from cardsim.issuance import CardIssuer
from idp.deployment import Deployment
from idp.settings import Settings
from tests.fixtures_cards import citizen
deployment = Deployment(Settings.from_env(None))
issuer = CardIssuer(deployment.ca, CardSettings.from_env(deployment.settings.home))
print(issuer.issue(parse_application(citizen(350))).number, flush=True)
sys.stdin.readline()
print(issuer.issue(parse_application(citizen(351))).number, flush=True)
issuer.close()
"""
    issuer = subprocess.Popen([PYTHON, "-c", program], env=home.env, cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert issuer.stdout is not None and issuer.stdin is not None
        first = issuer.stdout.readline().strip()
        shard = CardSettings.from_env(home.path, {}).shard_of(first)
        for i in range(3):  # another process makes tokens in the shard and deletes them
            init_token(shard.softhsm_conf, f"scratch-{i}")
        for folder in shard.token_dir.iterdir():
            if b"scratch-" in (folder / "token.object").read_bytes():
                shutil.rmtree(folder)
        issuer.stdin.write("\n")
        issuer.stdin.flush()
        out, err = issuer.communicate(timeout=120)
    finally:
        if issuer.poll() is None:
            issuer.kill()
            issuer.wait()
    assert issuer.returncode == 0, err
    second = out.strip()
    assert shard_of(second) == shard.index
    assert verify_json(home, second)["ok"] and verify_json(home, first)["ok"]



def test_a_token_its_writer_left_half_written_does_not_stop_the_next_card(home: Home, card_dir: Path) -> None:
    """An issuer killed while SoftHSM2 wrote a token's file leaves a token nobody can read
    (C_GetTokenInfo: CKR_GENERAL_ERROR, for good). A CI run met it after a killed batch: every
    later card of that shard failed. The writer now leaves such a token out, as readers do."""
    cards, planted = [], []
    try:
        for i in range(2):
            source = card_dir / f"after-broken-{i}.json"
            source.write_text(json.dumps(citizen(360 + i)))
            envelope = card_dir / f"after-broken-envelope-{i}.json"
            if i == 1:  # a copy of the first card's token, its file cut short, in every shard made so far
                for tokens in (home.path / "cards" / "shards").glob("*/tokens"):
                    model = next(folder for folder in tokens.iterdir() if folder.is_dir())
                    broken = tokens / "0badc0de-0000-0000-0000-000000000001"
                    shutil.copytree(model, broken)
                    planted.append(broken)
                    (broken / "token.object").write_bytes((broken / "token.object").read_bytes()[:10])
            result = subprocess.run([TESSERA, "card", "issue", "--from", str(source), "--envelope", str(envelope)],
                                    env=home.env, capture_output=True, timeout=120)
            assert result.returncode == 0, result.stderr.decode()
            cards.append(json.loads(envelope.read_text()))
    finally:  # the home is shared with the module's other tests
        for broken in planted:
            shutil.rmtree(broken, ignore_errors=True)
    assert all(verify_json(home, c["card"], c["pin"])["ok"] for c in cards)


def test_writers_opening_a_new_shard_at_once_all_get_a_whole_configuration(tmp_path: Path) -> None:
    """Three writers reach a new shard together when the last one fills up: none may fail, or
    read a configuration another is still writing."""
    program = f"""
import pathlib
from cardsim.config import CardSettings
settings = CardSettings.from_env(pathlib.Path({str(tmp_path)!r}), {{"TESSERA_CARD_DIR": {str(tmp_path / "cards")!r}}})
for index in range(200):
    shard = settings.shard(index)
    shard.prepare()
    assert shard.softhsm_conf.read_text().count("\\n") == 4, shard.softhsm_conf.read_text()
"""
    writers = [subprocess.Popen([PYTHON, "-c", program], cwd=REPO, stderr=subprocess.PIPE, text=True)
               for _ in range(6)]
    errors = [writer.communicate(timeout=120)[1] for writer in writers]
    assert [writer.returncode for writer in writers] == [0] * 6, errors
    settings = CardSettings.from_env(tmp_path, {"TESSERA_CARD_DIR": str(tmp_path / "cards")})
    assert len(settings.existing_shards()) == 200
    assert not list((tmp_path / "cards" / "shards").glob("*/.softhsm2.conf.*"))  # no half-written leftovers
