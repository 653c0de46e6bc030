"""One deployment's parts, built once per process from its settings."""

from __future__ import annotations

import datetime
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from ca.authority import CertificateAuthority, utc_now
from ca.database import make_engine, make_session_factory
from ca.keyring import Keyring
from ca.ocsp import OcspResponder
from ca.pkcs11_keys import TokenConfig
from ca.urls import PublicUrls
from idp.settings import Settings

if TYPE_CHECKING:
    from ca.timestamps import StoredTimeStampAuthority


class Deployment:
    """Engine, keyring, CA, OCSP responder and TSA of one Tessera home (per process)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.use_embedded_softhsm()

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.database_url)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_session_factory(self.engine)

    @cached_property
    def keyring(self) -> Keyring:
        token = TokenConfig(self.settings.pkcs11_module, self.settings.token_label, self.settings.pin())
        return Keyring(token, self.settings.key_passphrase)

    @cached_property
    def urls(self) -> PublicUrls:
        return PublicUrls(self.settings.public_url)

    @cached_property
    def ca(self) -> CertificateAuthority:
        return CertificateAuthority(self.sessions, self.keyring, self.urls, utc_now)

    @cached_property
    def ocsp(self) -> OcspResponder:
        return OcspResponder(self.engine, self.keyring, utc_now)

    @cached_property
    def tsa(self) -> "StoredTimeStampAuthority":
        from ca.timestamps import StoredTimeStampAuthority

        return StoredTimeStampAuthority(self.ca, self.sessions)

    def now(self) -> datetime.datetime:
        return utc_now()

    def close(self) -> None:
        if "keyring" in self.__dict__:
            self.keyring.close()
        if "engine" in self.__dict__:
            self.engine.dispose()
