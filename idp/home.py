"""The embedded default: one home folder with database, SoftHSM2 tokens and secrets.

``tessera init`` calls :func:`initialise_home`; running it again changes nothing. The home holds
keys, PINs and personal data: it and everything in it belong to the service's user alone (folders
0700, files 0600, whatever existed before; :func:`restrict_modes`), and the ``tessera`` command runs
with umask 077 so that what the service creates later (the SQLite WAL, slapd's files) is born so.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import stat
import subprocess
from pathlib import Path

from sqlalchemy import func, select

from ca.hierarchy import HierarchyPlan
from ca.models import Authority
from audit.checkpoints import prepare_audit_signer
from cardsim.setup import prepare_card_issuer
from store import schema
from idp.deployment import Deployment
from idp.embedded_directory import prepare_embedded_directory
from idp.settings import DEFAULT_PKCS11_MODULE, ConfigurationError, Settings


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")


#: modes of the home's folders and files (owner only)
FOLDER_MODE, FILE_MODE = 0o700, 0o600


def restrict_modes(home: Path) -> list[Path]:
    """Make ``home`` and every folder in it 0700 and every file 0600; return what was changed.

    Symbolic links are not followed (what they point to is not the home's); sockets and other
    special files keep their modes."""
    changed: list[Path] = []

    def restrict(path: Path, mode: int) -> None:
        if stat.S_IMODE(path.lstat().st_mode) != mode:
            os.chmod(path, mode)
            changed.append(path)

    restrict(home, FOLDER_MODE)
    for folder, dirs, files in os.walk(home):
        for name in dirs + files:
            path = Path(folder) / name
            try:
                kind = path.lstat().st_mode
            except FileNotFoundError:  # gone meanwhile (a running service's temporary file)
                continue
            if stat.S_ISDIR(kind):
                restrict(path, FOLDER_MODE)
            elif stat.S_ISREG(kind):
                restrict(path, FILE_MODE)
    return changed


def prepare_softhsm(settings: Settings) -> bool:
    """Create the private SoftHSM2 configuration and initialise the CA token. True if created."""
    if settings.pkcs11_module != DEFAULT_PKCS11_MODULE or settings.token_pin:
        return False  # an external HSM: its token is the operator's to prepare
    settings.token_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not settings.softhsm_conf.exists():
        settings.softhsm_conf.write_text(
            f"directories.tokendir = {settings.token_dir}\nobjectstore.backend = file\nlog.level = ERROR\n"
            "slots.removable = false\n"
        )
    os.environ.setdefault("SOFTHSM2_CONF", str(settings.softhsm_conf))
    pin_file = settings.secrets_dir / "ca-token.pin"
    if pin_file.exists():
        return False
    util = shutil.which("softhsm2-util")
    if util is None:
        raise ConfigurationError("softhsm2-util not found: install the Debian package softhsm2 (make run does)")
    pin, so_pin = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    subprocess.run(
        [util, "--init-token", "--free", "--label", settings.token_label, "--pin", pin, "--so-pin", so_pin],
        check=True, capture_output=True, env={**os.environ, "SOFTHSM2_CONF": str(settings.softhsm_conf)},
    )
    _write_secret(settings.secrets_dir / "ca-token.so-pin", so_pin)
    _write_secret(pin_file, pin)
    return True


def initialise_home(settings: Settings, plan: HierarchyPlan) -> list[str]:
    """Create whatever is missing; return a line per step done (empty when all was there)."""
    done: list[str] = []
    settings.home.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    if restrict_modes(settings.home):
        done.append(f"made {settings.home} and everything in it private to its owner (0700 folders, 0600 files)")
    if prepare_softhsm(settings):
        done.append(f"initialised SoftHSM2 token {settings.token_label!r} in {settings.token_dir}")
    if (plan.backend == "file" or plan.root_backend == "file") and not os.environ.get("TESSERA_KEY_PASSPHRASE"):
        passphrase_file = settings.secrets_dir / "key-passphrase"
        if not passphrase_file.exists():
            _write_secret(passphrase_file, secrets.token_urlsafe(32))
    if not settings.data_key_b64 and not settings.data_key_file.exists():
        _write_secret(settings.data_key_file, base64.b64encode(secrets.token_bytes(32)).decode())
        done.append(f"created the data key that seals TOTP secrets and OIDC keys ({settings.data_key_file})")
    done += prepare_embedded_directory(settings)
    deployment = Deployment(settings)
    try:
        schema.upgrade(deployment.engine)
        with deployment.sessions() as session:
            exists = (session.scalar(select(func.count()).select_from(Authority)) or 0) > 0
        if not exists:
            plan = HierarchyPlan(**{**plan.__dict__, "key_dir": plan.key_dir or settings.key_dir})
            for authority in deployment.ca.initialise(plan):
                done.append(f"created CA {authority.name}: {authority.subject}")
        for kid in deployment.signing_keys.ensure():
            done.append(f"created OpenID Connect signing key {kid}")
        done += prepare_card_issuer(settings.home, deployment.ca)
        done += prepare_audit_signer(deployment.ca)
    finally:
        deployment.close()
    restrict_modes(settings.home)  # what the steps above created, whatever the umask of the caller
    return done
