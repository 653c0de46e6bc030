"""Citizen cards: issuance per second at 100 / 1,000 / 10,000 cards already issued, beside the raw
SoftHSM2 limit (token initialisation + two key generations) measured in the same run, and reader
verifications per second. Run by hand: ``.venv/bin/python bench/cards_issue.py [--levels 100 1000 10000]``.

A card here is everything `tessera card issue` makes: token, two on-card key pairs, two
certificates, three signed records, the security object, the registry rows, one commit per card.
Filling up to a level uses the same path (with a progress bar); only the sample after reaching
the level is timed. Bounded by ``--max-minutes``; the home is a fresh `tessera init` in a
temporary folder, deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.servers import tessera_env  # noqa: E402


def _citizen(i: int) -> dict[str, str]:
    from cardsim.demo_citizens import chinese_citizen

    return chinese_citizen(i)


def raw_softhsm(folder: Path, count: int) -> float:
    """Tokens per second for C_InitToken + C_InitPIN + two P-256 key generations, nothing else
    (the same ctypes calls the card writer makes), in a process of its own on a scratch shard
    folder of the same kind as the one new cards go into (at most a few hundred tokens at every
    level). Not the live shard: deleting tokens from a folder that the writers hold open breaks
    their SoftHSM2 lookups (docs/platform-notes.md, SoftHSM2). The tokens are deleted afterwards."""
    code = f"""
import sys, time, pathlib, shutil
sys.path.insert(0, {str(ROOT)!r})
from cardsim.config import CardSettings, CardShard
from cardsim import cryptoki as ck
from cardsim.personalisation import CardWriter, ShardTokens, token_folder
settings = CardSettings.from_env(pathlib.Path({str(folder)!r}), {{"TESSERA_CARD_DIR": {str(folder)!r}}})
shard = CardShard(0, pathlib.Path({str(folder)!r}))
shard.prepare()
tokens = ShardTokens(shard, settings.module_path)
writer = CardWriter(settings)
made = []
start = time.perf_counter()
for i in range({count}):
    slot = tokens.free_slot
    tokens.p11.init_token(slot, "12345678", f"raw-{{i}}")
    tokens.free_slot = tokens.next_free_slot(slot)
    session = tokens.p11.open_session(slot)
    tokens.p11.login(session, ck.CKU_SO, "12345678"); tokens.p11.init_pin(session, "123456")
    tokens.p11.logout(session); tokens.p11.login(session, ck.CKU_USER, "123456")
    writer._generate(tokens.p11, session, "citizen-auth"); writer._generate(tokens.p11, session, "citizen-sign")
    tokens.p11.close_session(session)
    made.append(tokens.p11.token_info(slot)[1])
elapsed = time.perf_counter() - start
for serial in made:
    path = token_folder(shard.token_dir, serial)
    if path: shutil.rmtree(path)
print({count} / elapsed)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def raw_reads(home: Path, cards: list[tuple[str, str]], seconds: float) -> tuple[float, float]:
    """(verifications per second, CPU ms per verification) of the PKCS#11 floor of a verification
    with the PIN, nothing checked: the reader's own calls (cardsim.cryptoki on the shard's module
    copy, tokens found through the prebuilt index): open a session, log in (under the card's try
    counter, as the reader does), one C_FindObjects, one C_GetAttributeValue per object, sign a
    challenge digest, close. Before 25 November 2026 this was python-pkcs11's calls (three
    searches, every value sized in a call of its own): the tables before then say "floor (old)"."""
    sample = home / "raw-sample.json"
    sample.write_text(json.dumps(cards))
    code = f"""
import hashlib, json, os, pathlib, sys, time
sys.path.insert(0, {str(ROOT)!r})
from cardsim import cryptoki as ck
from cardsim.config import CardSettings
from cardsim.pins import TryCounter
from cardsim.shard_module import ShardLibrary
settings = CardSettings.from_env(pathlib.Path({str(home)!r}))
cards = json.loads(pathlib.Path({str(sample)!r}).read_text())
libraries, slots = {{}}, {{}}
for number, _ in cards:
    shard = settings.shard_of(number)
    if shard.index not in libraries:
        library = ShardLibrary(shard, settings.module_path)
        libraries[shard.index] = (library, ck.Cryptoki.attached(library.module))
    library, p11 = libraries[shard.index]
    slots[number] = (p11, library.tokens[number].slot.slot_id)
kinds, sizes = (ck.CKA_CLASS, ck.CKA_LABEL, ck.CKA_APPLICATION, ck.CKA_VALUE), (8, 64, 64, 8192)
done = 0
deadline = time.perf_counter() + {seconds}
start, cpu = time.perf_counter(), time.process_time()
while time.perf_counter() < deadline:
    number, pin = cards[done % len(cards)]
    p11, slot = slots[number]
    counter = TryCounter(settings.counter_dir, number)
    opened = []
    counter.attempt_pin(lambda: opened.append(p11.open_session(slot, rw=False)) or p11.login(opened[0], ck.CKU_USER, pin),
                        lambda exc: False)
    key = None
    for handle in p11.all_objects(opened[0]):
        values = p11.attributes(opened[0], handle, kinds, sizes)
        if int.from_bytes(values[ck.CKA_CLASS], sys.byteorder) == ck.CKO_PRIVATE_KEY and values[ck.CKA_LABEL] == b"citizen-auth":
            key = handle
    p11.sign_ecdsa(opened[0], key, hashlib.sha256(os.urandom(32)).digest())
    p11.close_session(opened[0])
    done += 1
print(done / (time.perf_counter() - start), 1000 * (time.process_time() - cpu) / done)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    rate, cpu_ms = out.stdout.split()
    return float(rate), float(cpu_ms)


def reader_rate(home: Path, cards: list[tuple[str, str]], seconds: float, with_pin: bool,
                processes: int) -> tuple[float, float, float]:
    """(verifications per second by ``processes`` reader processes (CRL status, registry on), seconds
    a reader took to open the sample's shards, CPU ms per verification in a reader process: its
    process time, far less disturbed by other work on the machine than the rate). Each reader
    opens every shard of the sample before the clock starts, as a long-running service has (and
    as the raw floor does)."""
    sample = home / "reader-sample.json"
    sample.write_text(json.dumps(cards))
    code = f"""
import json, os, random, sys, time, pathlib
sys.path.insert(0, {str(ROOT)!r})
from cardsim.config import CardSettings
settings = CardSettings.from_env(pathlib.Path({str(home)!r}))
from idp.settings import Settings
from idp.deployment import Deployment
from cardsim.reader import CardReader, ReaderTrust
deployment = Deployment(Settings.from_env({str(home)!r}))
reader = CardReader(settings, ReaderTrust.from_registry(deployment.sessions))
cards = json.loads(pathlib.Path({str(sample)!r}).read_text())
random.shuffle(cards)
opening = time.perf_counter()
assert all(number in reader for number, _ in cards)  # opens and indexes every shard of the sample
opening = time.perf_counter() - opening
reader.verify(cards[0][0])
done, bad = 0, 0
deadline = time.perf_counter() + {seconds}
start, cpu = time.perf_counter(), time.process_time()
while time.perf_counter() < deadline:
    number, pin = cards[done % len(cards)]
    result = reader.verify(number, pin={'pin' if with_pin else 'None'})
    if not result.ok:
        bad += 1
        print(number, sorted(result.reasons), [c.detail for c in result.failures][:2], file=sys.stderr)
    done += 1
print(done / (time.perf_counter() - start), bad, opening, 1000 * (time.process_time() - cpu) / done)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOFTHSM2_")}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(processes)]
    total, opening, cpu_ms = 0.0, 0.0, 0.0
    for proc in procs:
        out, _ = proc.communicate()
        rate, bad, opened, cpu = out.split()
        if int(bad):
            raise SystemExit(f"{bad} sample cards failed verification: the benchmark is invalid")
        total += float(rate)
        opening = max(opening, float(opened))
        cpu_ms += float(cpu) / processes
    return total, opening, cpu_ms


def reader_profile(home: Path, count: int) -> None:
    """Where a reader's CPU goes: ``time.process_time`` around each part of ``CardReader.verify``
    (with the PIN, CRL status, registry on), ``count`` verifications over the kept sample of a
    home an earlier run kept; one process. Parts nested in another are indented."""
    code = f"""
import collections, functools, json, pathlib, random, sys, time
sys.path.insert(0, {str(ROOT)!r})
from cardsim import reader as R
from cardsim.config import CardSettings
from idp.deployment import Deployment
from idp.settings import Settings
home = pathlib.Path({str(home)!r})
trust = R.ReaderTrust.from_registry(Deployment(Settings.from_env({str(home)!r})).sessions)
reader = R.CardReader(CardSettings.from_env(home), trust)
cards = json.loads((home / "reader-sample.json").read_text())
random.shuffle(cards)
assert all(number in reader for number, _ in cards)
for number, pin in cards[:20]:
    assert reader.verify(number, pin=pin).ok
spent = collections.Counter()
def timed(owner, name, label):
    function = getattr(owner, name)
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        start = time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            spent[label] += time.process_time() - start
    setattr(owner, name, wrapper)
parts = [(reader, "read", "read the card (PKCS#11, try counter)"),
         (trust, "registry", "registry entry"),
         (reader, "_certificates", "card certificates (path, CRL status)"),
         (reader._chains, "validate_path", "  of which path validation"),
         (reader, "_security_object", "security object"),
         (reader, "_record", "records (3)"),
         (R, "open_signed_data", "  of which CMS SignedData (4, with the security object's)"),
         (R, "parse_content", "  of which JSON parsing (4)"),
         (reader, "_signer", "  of which signer checks (4)"),
         (reader, "_active_authentication", "active authentication")]
for owner, name, label in parts:
    timed(owner, name, label)
start = time.process_time()
for i in range({count}):
    number, pin = cards[i % len(cards)]
    assert reader.verify(number, pin=pin).ok
total = time.process_time() - start
print("| part | CPU ms per verification |")
print("|---|---:|")
for _, _, label in parts:
    print(f"| {{label}} | {{1000 * spent[label] / {count}:.3f}} |")
print(f"| total (verify) | {{1000 * total / {count}:.3f}} |")
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOFTHSM2_")}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def readers_only(home: Path, seconds: float) -> None:
    """The reader columns alone, on a home kept by an earlier run (``--keep``) and its sample."""
    sample = json.loads((home / "reader-sample.json").read_text())
    public, opening, public_ms = reader_rate(home, sample, seconds, with_pin=False, processes=1)
    pinned, _, pinned_ms = reader_rate(home, sample, seconds, with_pin=True, processes=1)
    pinned2, _, pinned2_ms = reader_rate(home, sample, seconds, with_pin=True, processes=2)
    floor, floor_ms = raw_reads(home, sample, seconds)
    print("| cards in the sample | verif./s no PIN (CPU ms) | with PIN + active auth (CPU ms) "
          "| with PIN, 2 processes (CPU ms each) | raw PKCS#11 floor /s (CPU ms) | shards, s to open |")
    print("|---:|---:|---:|---:|---:|---:|")
    shards = len({n[1:4] for n, _ in sample})
    print(f"| {len(sample)} | {public:.0f} ({public_ms:.2f}) | {pinned:.0f} ({pinned_ms:.2f}) "
          f"| {pinned2:.0f} ({pinned2_ms:.2f}) | {floor:.0f} ({floor_ms:.2f}) | {shards}, {opening:.1f} |")
    print(f"\ncores={os.cpu_count()} home={home} load average {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--sample", type=int, default=150, help="cards timed at each level")
    parser.add_argument("--raw", type=int, default=60, help="raw SoftHSM tokens timed at each level")
    parser.add_argument("--writers", type=int, default=3, help="personalisation processes")
    parser.add_argument("--reader-seconds", type=float, default=5.0)
    parser.add_argument("--max-minutes", type=float, default=30.0)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--readers-only", type=Path, metavar="HOME",
                        help="only the reader columns, on a home an earlier run kept (--keep)")
    parser.add_argument("--reader-profile", type=Path, metavar="HOME",
                        help="where a reader's CPU goes, part by part, on a home an earlier run kept")
    parser.add_argument("--profile-count", type=int, default=3000, help="verifications for --reader-profile")
    args = parser.parse_args()
    if args.reader_profile is not None:
        reader_profile(args.reader_profile, args.profile_count)
        return
    if args.readers_only is not None:
        os.environ.pop("SOFTHSM2_CONF", None)
        readers_only(args.readers_only, args.reader_seconds)
        return

    base = Path(tempfile.mkdtemp(prefix="tessera-cards-bench-"))
    env = tessera_env(base)
    subprocess.run([str(Path(sys.executable).parent / "tessera"), "init"], env=env, check=True, capture_output=True)
    os.environ.update(TESSERA_HOME=str(base))
    os.environ.pop("SOFTHSM2_CONF", None)

    import click

    from cardsim.citizens import parse_application
    from cardsim.config import CardSettings
    from cardsim.issuance import CardIssuer, CardJob, IssuedCard
    from idp.deployment import Deployment
    from idp.settings import Settings

    deployment = Deployment(Settings.from_env(base, env))
    settings = CardSettings.from_env(base, env)
    issuer = CardIssuer(deployment.ca, settings, actor="bench")
    deadline = time.monotonic() + args.max_minutes * 60
    issued: list[IssuedCard] = []
    counter = [0]

    def writers_cpu() -> float:
        return sum(s.call("statistics")["cpu_seconds"] for s in [issuer.station, *issuer._more_stations[:args.writers - 1]])

    def run(count: int, label: str) -> tuple[float, float, float]:
        """(cards per second, CPU ms per card in this process, CPU ms per card in the writers)."""
        issuer._extra_stations(args.writers - 1)
        writer_start = writers_cpu()
        first = counter[0]  # the generator runs later: each run issues to citizens of its own
        jobs = (CardJob(parse_application(_citizen(first + i), scheme="cn-gb11643")) for i in range(count))
        counter[0] += count
        failures: list[BaseException] = []
        with click.progressbar(length=count, label=label, file=sys.stderr, show_pos=True, show_eta=True) as bar:
            def ok(card: IssuedCard) -> None:
                issued.append(card)
                bar.update(1)

            start, cpu = time.perf_counter(), time.process_time()
            issuer.issue_many(jobs, ok, lambda job, exc: failures.append(exc), writers=args.writers)
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        if failures:
            raise SystemExit(f"{len(failures)} cards failed: {failures[0]}")
        return count / elapsed, 1000 * cpu / count, 1000 * (writers_cpu() - writer_start) / count

    rows = []
    for level in args.levels:
        if time.monotonic() > deadline:
            print(f"stopping before level {level}: --max-minutes reached", file=sys.stderr)
            break
        fill = level - len(issued)
        fill_rate = run(fill, f"filling to {level:>6} cards")[0] if fill > 0 else 0.0
        # the raw limit just before and just after the sample: the machine is shared, its load moves
        raw_before = raw_softhsm(base / "raw-shard", args.raw)
        rate, parent_ms, writer_ms = run(args.sample, f"timed sample at {level:>6}")
        raw = (raw_before + raw_softhsm(base / "raw-shard", args.raw)) / 2
        sample = [(c.number, c.pin) for c in random.sample(issued, min(500, len(issued)))]
        public, opening, _ = reader_rate(base, sample, args.reader_seconds, with_pin=False, processes=1)
        pinned, _, pinned_ms = reader_rate(base, sample, args.reader_seconds, with_pin=True, processes=1)
        pinned2 = reader_rate(base, sample, args.reader_seconds, with_pin=True, processes=2)[0]
        shards = len({n[1:4] for n, _ in sample})
        floor, floor_ms = raw_reads(base, sample, args.reader_seconds)
        scans = sum(s.call("statistics")["full_scans"] for s in [issuer.station, *issuer._more_stations])
        rows.append((level, rate, fill_rate, raw, parent_ms, writer_ms, public, pinned, pinned_ms, pinned2, floor,
                     floor_ms, scans, shards, opening))
        print(f"level {level}: {rate:.1f} cards/s (fill {fill_rate:.1f}), raw SoftHSM {raw:.1f}/s, CPU per card "
              f"{parent_ms:.1f} ms CA side + {writer_ms:.1f} ms writers, reader "
              f"{public:.0f}/s without PIN, {pinned:.0f}/s with PIN ({pinned_ms:.2f} ms CPU each), {pinned2:.0f}/s "
              f"with PIN in 2 processes, raw PKCS#11 login+read+sign {floor:.0f}/s ({floor_ms:.2f} ms CPU); a reader opened the sample's {shards} shard(s) in {opening:.1f} s",
              file=sys.stderr)
    issuer.close()
    deployment.close()
    print()
    print("| cards already issued | cards/s (timed sample) | cards/s (fill) | raw SoftHSM init+2 keygen /s "
          "| ratio | CPU ms/card CA side | CPU ms/card writers "
          "| verifications/s no PIN | with PIN + active auth (CPU ms each) | with PIN, 2 processes "
          "| raw PKCS#11 login+read+sign /s (CPU ms each) | writer full scans | reader: shards opened, seconds |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (level, rate, fill, raw, parent_ms, writer_ms, public, pinned, pinned_ms, pinned2, floor, floor_ms, scans, shards,
         opening) in rows:
        print(f"| {level:,} | {rate:.1f} | {fill:.1f} | {raw:.1f} | {rate / raw:.2f} | {parent_ms:.1f} | {writer_ms:.1f} "
              f"| {public:.0f} | {pinned:.0f} ({pinned_ms:.2f}) | {pinned2:.0f} | {floor:.0f} ({floor_ms:.2f}) | {scans} "
              f"| {shards}, {opening:.1f} |")
    print(f"\nwriters={args.writers} sample={args.sample} raw={args.raw} cores={os.cpu_count()} home={base}")
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
