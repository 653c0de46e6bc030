"""One deployment's parts, built once per process from its settings.

The web service holds its deployment as a Flask extension (:meth:`Deployment.init_app`); its views
reach it through :data:`current_deployment`, as they reach the application through ``current_app``.
"""

from __future__ import annotations

import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.local import LocalProxy

from ca.authority import CertificateAuthority, utc_now
from ca.keyring import Keyring
from ca.ocsp import OcspResponder
from ca.pkcs11_keys import TokenConfig
from ca.urls import PublicUrls
from idp.settings import Settings
from store.engine import make_engine, make_session_factory

if TYPE_CHECKING:
    from audit import AuditTrail
    from ca.timestamps import StoredTimeStampAuthority
    from idp.account_lifecycle import Lifecycle
    from directory.client import Directory
    from idp.oidc.clients import ClientRegistry
    from idp.oidc.keys import SigningKeys
    from idp.password_policy import PasswordPolicy
    from idp.runtime_settings import RuntimeSettings
    from idp.second_factor import SecondFactor
    from idp.secretbox import SecretBox
    from idp.sessions import SessionStore
    from idp.throttle import LoginThrottle


#: the deployment's name in ``app.extensions`` (Flask's registry of an application's extensions)
EXTENSION = "tessera"


class Deployment:
    """Engine, keyring, CA, OCSP responder and TSA of one Tessera home (per process)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.use_embedded_softhsm()

    def init_app(self, app: Flask) -> None:
        """Serve ``app`` from this deployment (Flask's extension pattern): its views find it as
        :data:`current_deployment`."""
        app.extensions[EXTENSION] = self

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.database_url)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_session_factory(self.engine)

    @cached_property
    def keyring(self) -> Keyring:
        token = TokenConfig(self.settings.pkcs11_module, self.settings.token_label, self.settings.pin())
        return Keyring(token, self.settings.key_passphrase, self.settings.sm2_signer_id.encode())

    @cached_property
    def urls(self) -> PublicUrls:
        return PublicUrls(self.settings.public_url)

    @cached_property
    def ca(self) -> CertificateAuthority:
        """The CA; its certificate operations write their audit entries inside their own transactions."""
        from idp.audit_bridge import ca_sink

        ca = CertificateAuthority(self.sessions, self.keyring, self.urls, utc_now, policy_arc=self.settings.policy_arc)
        self.__dict__["ca"] = ca  # the trail needs the CA (its checkpoint signer and TSA): publish it first
        ca.events = ca_sink(self.audit)
        return ca

    @cached_property
    def audit(self) -> AuditTrail:
        """The tamper-evident audit trail; idp and card security events are recorded into it."""
        from audit import open_trail
        from idp.audit_bridge import install

        ca = self.ca
        if "audit" in self.__dict__:  # building the CA built the trail already
            return self.__dict__["audit"]
        from audit.witness import attach, witness_from_settings

        witness = witness_from_settings(self.settings.home, self.settings.audit_witness, self.settings.audit_syslog)
        attach(self.sessions, witness)  # every CRL witnessed, numbered above what the witness saw
        trail = open_trail(ca, self.sessions, self.tsa, self.settings.audit_checkpoint_every,
                           witness=witness if witness.enabled else None)
        install(trail)
        return trail

    @cached_property
    def ocsp(self) -> OcspResponder:
        return OcspResponder(self.engine, self.keyring, utc_now)

    @cached_property
    def tsa(self) -> StoredTimeStampAuthority:
        from ca.timestamps import StoredTimeStampAuthority

        return StoredTimeStampAuthority(self.ca, self.sessions)

    @cached_property
    def sm2_tsa(self) -> StoredTimeStampAuthority:
        """The SM2 hierarchy's TSA (``tessera ca add-sm2``): SM2-with-SM3 signed tokens (GB/T 20518)."""
        from ca.timestamps import StoredTimeStampAuthority

        return StoredTimeStampAuthority(self.ca, self.sessions, "sm2-staff")

    # -- identity provider ---------------------------------------------------------------
    @cached_property
    def directory(self) -> Directory:
        """The staff directory (python-ldap), from ``TESSERA_LDAP_*`` or the embedded slapd."""
        from directory.client import Directory
        from directory.config import DirectoryConfig

        return Directory(DirectoryConfig.from_env(self.settings.home))

    @cached_property
    def secret_box(self) -> SecretBox:
        from idp.secretbox import SecretBox

        return SecretBox(self.settings.data_key())

    @cached_property
    def second_factor(self) -> SecondFactor:
        from idp.second_factor import SecondFactor
        from idp.totp import TotpVerifier

        return SecondFactor(self.sessions, self.secret_box, utc_now, TotpVerifier(tuning=self.runtime.get))

    @cached_property
    def runtime(self) -> RuntimeSettings:
        """The settings the system administrator may change at run time (cached a few seconds)."""
        from idp.runtime_settings import RuntimeSettings

        return RuntimeSettings(self.sessions, self.settings, utc_now)

    @cached_property
    def web_sessions(self) -> SessionStore:
        from idp.sessions import SessionStore

        return SessionStore(self.sessions, utc_now, datetime.timedelta(seconds=self.settings.session_idle_seconds),
                            datetime.timedelta(seconds=self.settings.session_absolute_seconds), self.runtime.get)

    @cached_property
    def throttle(self) -> LoginThrottle:
        from idp.throttle import LoginThrottle

        return LoginThrottle(self.sessions, utc_now, self.settings.throttle_account_failures,
                             self.settings.throttle_address_failures,
                             datetime.timedelta(seconds=self.settings.throttle_window_seconds), self.runtime.get,
                             account_wide_limit=self.settings.throttle_account_wide_failures,
                             usual_address_days=self.settings.throttle_usual_address_days)

    @cached_property
    def lifecycle(self) -> Lifecycle:
        """The administrative acts (applications, approvals, four-eyes requests) of this deployment."""
        from idp.account_lifecycle import Lifecycle

        return Lifecycle(self)

    @cached_property
    def password_policy(self) -> PasswordPolicy:
        """The rules a new staff password must meet, tuned at run time (:mod:`idp.password_policy`)."""
        from idp.password_policy import PasswordPolicy

        return PasswordPolicy(self.sessions, self.now, tuning=self.runtime.get)

    @cached_property
    def clients(self) -> ClientRegistry:
        from idp.oidc.clients import ClientRegistry

        return ClientRegistry(self.sessions, utc_now)

    @cached_property
    def signing_keys(self) -> SigningKeys:
        from idp.oidc.keys import SigningKeys

        return SigningKeys(self.sessions, self.secret_box, utc_now)

    def citizen_claims(self, uid: str) -> dict[str, Any] | None:
        """The claims of ``citizen:<pseudonym>`` (``citizen:<national id>`` for certificates made before
        pseudonyms) from the citizen and card registries; None without an active card."""
        from sqlalchemy import select

        from cardsim.models import Card, CardStatus
        from cardsim.pseudonyms import citizen_of, is_pseudonym

        value = uid.removeprefix("citizen:")
        with self.sessions() as session:
            national_id = citizen_of(session, value) if is_pseudonym(value) else value
            if national_id is None:
                return None
            holder = session.scalar(select(Card.holder)
                                    .where(Card.national_id == national_id, Card.status == CardStatus.ACTIVE)
                                    .order_by(Card.issued_at.desc()).limit(1))
        if holder is None:
            return None
        return {"sub": uid, "national_id": national_id, "name": holder}

    def staff_still_active(self, uid: str) -> bool | None:
        """Whether the directory still has ``uid`` enabled (claims refreshed on the way); None when
        the directory cannot be asked (an outage must not end everyone's tokens). A citizen is
        active while they hold an active card."""
        if uid.startswith("citizen:"):
            return self.citizen_claims(uid) is not None
        from directory.errors import DirectoryError
        from idp.staff import claims_of

        try:
            member = self.directory.find(uid)
        except DirectoryError:
            return None
        if member is None or not member.enabled:
            return False
        from idp.roles import login_refusal

        if login_refusal(member.groups) is not None:
            return False  # two administrator roles: refused at login, so refreshed tokens are refused too
        self.second_factor.remember(uid, claims_of(member))
        return True

    def end_staff_access(self, uid: str) -> tuple[int, int]:
        """A leaver, or log out everywhere: end every session and token of ``uid``.
        Returns (sessions ended, access tokens revoked)."""
        from idp.oidc.tokens import TokenStore

        sessions = self.web_sessions.end_all(uid)
        tokens = TokenStore(self.sessions, utc_now, lambda _uid: None, lambda _cid: None).revoke_user(uid)
        return sessions, tokens

    def now(self) -> datetime.datetime:
        return utc_now()

    def close(self) -> None:
        if "directory" in self.__dict__:
            self.directory.close()
        if "keyring" in self.__dict__:
            self.keyring.close()
        if "engine" in self.__dict__:
            self.engine.dispose()


def _app_deployment() -> Deployment:
    return current_app.extensions[EXTENSION]


#: the deployment of the application handling the current request (set by :meth:`Deployment.init_app`);
#: typed as the deployment itself, as Flask types ``current_app``
current_deployment: Deployment = LocalProxy(_app_deployment)  # type: ignore[assignment]
