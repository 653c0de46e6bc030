"""Settings: one object built from ``TESSERA_*`` environment variables with safe defaults.

The embedded default needs nothing but a home folder (``TESSERA_HOME``, default ``./var``):
SQLite database, SoftHSM2 configuration and tokens, and secrets all live under it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ca.profiles import EXAMPLE_POLICY_ARC, check_policy_arc
from ca.sm2 import DEFAULT_SIGNER_ID

DEFAULT_PKCS11_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


class ConfigurationError(Exception):
    """The deployment is not configured or prepared well enough to run the command."""


def _number(env: dict[str, str], name: str, default: int) -> int:
    """A whole-number setting; anything else is a ConfigurationError naming the variable."""
    value = env.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, not {value!r}") from None


SECURITY_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    public_url: str
    pkcs11_module: str
    token_label: str
    max_request_bytes: int
    token_pin: str | None = field(default=None, repr=False)
    #: staff sessions: idle and absolute timeouts (seconds)
    session_idle_seconds: int = 30 * 60
    session_absolute_seconds: int = 12 * 3600
    #: Secure cookies (and the __Host- prefix); default: when the public URL is https
    cookie_secure: bool = False
    #: login throttling on top of the directory's ppolicy: failures per window, per account and per address
    throttle_account_failures: int = 10
    throttle_address_failures: int = 100
    throttle_window_seconds: int = 15 * 60
    #: command-line operator tokens (`tessera admin login`): lifetime in seconds
    operator_token_seconds: int = 15 * 60
    #: login throttling: failures per window for one account from all addresses together (generous);
    #: an address the account logged in from in the last throttle_usual_address_days is exempt from it
    throttle_account_wide_failures: int = 50
    throttle_usual_address_days: int = 90
    #: the embedded directory's ppolicy pwdMaxFailure: a backstop, kept above the throttle's limits
    directory_max_failures: int = 100
    data_key_b64: str | None = field(default=None, repr=False)
    #: reverse proxies in front of the service whose X-Forwarded-For/-Proto are trusted (0: none)
    proxy_hops: int = 0
    #: an automatic signed, time-stamped audit checkpoint after this many entries
    audit_checkpoint_every: int = 1000
    #: a time-based audit checkpoint at least this often (seconds) while entries are appended (0: none)
    audit_checkpoint_interval: int = 60
    #: the append-only file each checkpoint is also witnessed in ("": <home>/audit-witness.log; "off": none)
    audit_witness: str = ""
    #: remote syslog for the witness (udp://host:514, tcp://host:514 or a socket path; None: none)
    audit_syslog: str | None = None
    #: the security log on stderr (idp.events): INFO shows failures, DEBUG successes too
    security_log_level: str = "INFO"
    #: the language of pages when nothing else chooses one (Babel locale name: zh_CN or en)
    default_locale: str = "zh_CN"
    #: the IANA time zone in which pages show times (they are stored in UTC)
    timezone: str = "Asia/Shanghai"
    #: HTTP: seconds a client has for a request's headers, then again for its whole body (then cut off)
    http_read_timeout: int = 10
    #: HTTP: the largest request body the server reads at all (endpoints keep smaller limits of their own)
    http_max_body_bytes: int = 8 * 1024 * 1024
    #: the arc of the certificate policy OIDs (``<arc>.<n>``, one per profile: ca.profiles), under the
    #: organisation's registered OID; the default is the ITU-T/ISO example arc (docs/ca.md)
    policy_arc: str = EXAMPLE_POLICY_ARC
    #: the SM2 signer identity of new SM2 hierarchies (GB/T 32918.2 section 5.5): the standard's
    #: 1234567812345678, or "" for relying parties that verify with OpenSSL 3.0's default (docs/sm2.md)
    sm2_signer_id: str = DEFAULT_SIGNER_ID.decode()
    #: the foreign trust anchors file (TOML, docs/verification.md), read at start: one that does not
    #: read stops the service rather than trusting less or more than it says; "" for none
    trust_list: str = ""

    def __post_init__(self) -> None:
        if self.security_log_level not in SECURITY_LOG_LEVELS:
            raise ConfigurationError(f"TESSERA_SECURITY_LOG_LEVEL must be one of {', '.join(SECURITY_LOG_LEVELS)}, "
                                     f"not {self.security_log_level!r}")
        try:
            check_policy_arc(self.policy_arc)
        except ValueError as exc:
            raise ConfigurationError(f"TESSERA_POLICY_ARC: {exc}") from None
        if self.trust_list:
            from verification.certificates import PURPOSES
            from verification.trust_list import TrustListError, load_trust_list

            try:
                load_trust_list(self.trust_list, tuple(PURPOSES))
            except TrustListError as exc:
                raise ConfigurationError(str(exc)) from None

    @classmethod
    def from_env(cls, home: str | Path | None = None, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        home_path = Path(home or env.get("TESSERA_HOME") or "var").resolve()
        public_url = (env.get("TESSERA_PUBLIC_URL") or "http://127.0.0.1:5000").rstrip("/")
        return cls(
            home=home_path,
            database_url=env.get("TESSERA_DATABASE_URL") or f"sqlite:///{home_path / 'tessera.db'}",
            public_url=public_url,
            pkcs11_module=env.get("TESSERA_PKCS11_MODULE") or DEFAULT_PKCS11_MODULE,
            token_label=env.get("TESSERA_CA_TOKEN_LABEL") or "tessera-ca",
            max_request_bytes=_number(env, "TESSERA_MAX_REQUEST_BYTES", 64 * 1024),
            token_pin=env.get("TESSERA_CA_TOKEN_PIN") or None,
            session_idle_seconds=_number(env, "TESSERA_SESSION_IDLE_SECONDS", 30 * 60),
            session_absolute_seconds=_number(env, "TESSERA_SESSION_MAX_SECONDS", 12 * 3600),
            cookie_secure=_flag(env.get("TESSERA_COOKIE_SECURE"), public_url.startswith("https://")),
            throttle_account_failures=_number(env, "TESSERA_THROTTLE_ACCOUNT_FAILURES", 10),
            throttle_address_failures=_number(env, "TESSERA_THROTTLE_ADDRESS_FAILURES", 100),
            throttle_window_seconds=_number(env, "TESSERA_THROTTLE_WINDOW_SECONDS", 15 * 60),
            operator_token_seconds=_number(env, "TESSERA_OPERATOR_TOKEN_SECONDS", 15 * 60),
            throttle_account_wide_failures=_number(env, "TESSERA_THROTTLE_ACCOUNT_WIDE_FAILURES", 50),
            throttle_usual_address_days=_number(env, "TESSERA_THROTTLE_USUAL_ADDRESS_DAYS", 90),
            directory_max_failures=_number(env, "TESSERA_DIRECTORY_MAX_FAILURES", 100),
            data_key_b64=env.get("TESSERA_DATA_KEY") or None,
            proxy_hops=_number(env, "TESSERA_PROXY_HOPS", 0),
            audit_checkpoint_every=_number(env, "TESSERA_AUDIT_CHECKPOINT_EVERY", 1000),
            audit_checkpoint_interval=_number(env, "TESSERA_AUDIT_CHECKPOINT_INTERVAL", 60),
            audit_witness=env.get("TESSERA_AUDIT_WITNESS") or "",
            audit_syslog=env.get("TESSERA_AUDIT_SYSLOG") or None,
            security_log_level=(env.get("TESSERA_SECURITY_LOG_LEVEL") or "INFO").upper(),
            default_locale=(env.get("TESSERA_DEFAULT_LOCALE") or "zh_CN").replace("-", "_"),
            timezone=env.get("TESSERA_TIMEZONE") or "Asia/Shanghai",
            http_read_timeout=_number(env, "TESSERA_HTTP_READ_TIMEOUT", 10),
            http_max_body_bytes=_number(env, "TESSERA_HTTP_MAX_BODY_BYTES", 8 * 1024 * 1024),
            policy_arc=(env.get("TESSERA_POLICY_ARC") or EXAMPLE_POLICY_ARC).strip(),
            sm2_signer_id=env.get("TESSERA_SM2_SIGNER_ID", DEFAULT_SIGNER_ID.decode()),
            trust_list=env.get("TESSERA_TRUST_LIST") or "",
        )

    def warn_if_example_policy_arc(self) -> bool:
        """At start-up: log a warning when certificates are issued under the example policy arc,
        which means nothing to relying parties outside a test (RFC 5280 section 4.2.1.4). True if so."""
        if self.policy_arc != EXAMPLE_POLICY_ARC:
            return False
        logging.getLogger("tessera.ca").warning(
            "certificates are issued under the example policy arc %s: set TESSERA_POLICY_ARC to an arc under "
            "your organisation's registered OID before `tessera init` (docs/ca.md)", EXAMPLE_POLICY_ARC)
        return True

    # -- embedded layout -----------------------------------------------------------------
    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    @property
    def softhsm_conf(self) -> Path:
        return self.home / "softhsm" / "softhsm2.conf"

    @property
    def token_dir(self) -> Path:
        return self.home / "softhsm" / "tokens"

    @property
    def key_dir(self) -> Path:
        return self.home / "keys"

    @property
    def data_key_file(self) -> Path:
        """The key that seals TOTP secrets and OIDC signing keys at rest (AES-256-GCM)."""
        from store.data_key import data_key_file

        return data_key_file(self.home)

    def data_key(self) -> bytes:
        """``TESSERA_DATA_KEY`` (base64 of 32 bytes) or the embedded secrets file (store.data_key)."""
        from store.data_key import DataKeyError, load_data_key

        try:
            return load_data_key(self.data_key_b64, self.data_key_file)
        except DataKeyError as exc:
            raise ConfigurationError(str(exc)) from None

    def pin(self) -> str:
        """The CA token's user PIN: ``TESSERA_CA_TOKEN_PIN`` or the embedded secrets file."""
        if self.token_pin:
            return self.token_pin
        path = self.secrets_dir / "ca-token.pin"
        try:
            return path.read_text().strip()
        except OSError:
            raise ConfigurationError(f"no CA token PIN: set TESSERA_CA_TOKEN_PIN or run `tessera init` ({path} missing)") from None

    def key_passphrase(self, _path: Path) -> bytes:
        """Passphrase of file keys: ``TESSERA_KEY_PASSPHRASE`` or the embedded secrets file."""
        value = os.environ.get("TESSERA_KEY_PASSPHRASE")
        if value:
            return value.encode()
        return (self.secrets_dir / "key-passphrase").read_bytes().strip()

    def use_embedded_softhsm(self) -> None:
        """Point SoftHSM2 at the home's private token folder (unless configured otherwise)."""
        if self.pkcs11_module == DEFAULT_PKCS11_MODULE and self.softhsm_conf.exists():
            os.environ.setdefault("SOFTHSM2_CONF", str(self.softhsm_conf))
