"""The security log line of an event (idp.events): failures at WARNING, successes at DEBUG (as
Keycloak's event logger does); the audit trail keeps both (tests/test_audit_wiring.py)."""

from __future__ import annotations

import json
import logging

import pytest

from idp import events
from idp.settings import ConfigurationError, Settings


def test_failures_are_logged_and_successes_only_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="tessera.security"):
        events.record("login", "staff:jdoe", "staff:jdoe", "success", factors=["pwd", "otp"])
        events.record("login.password", "address:192.0.2.7", "staff:jdoe", "failure", reason="invalid-credentials")
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    line = json.loads(caplog.records[0].getMessage())
    assert line == {"action": "login.password", "actor": "address:192.0.2.7", "at": line["at"],
                    "details": {"reason": "invalid-credentials"}, "result": "failure", "target": "staff:jdoe"}
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="tessera.security"):
        events.record("login", "staff:jdoe", "staff:jdoe", "success")
    assert [(r.levelno, json.loads(r.getMessage())["action"]) for r in caplog.records] == [(logging.DEBUG, "login")]


def test_log_level_setting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert Settings.from_env(tmp_path, {}).security_log_level == "INFO"
    assert Settings.from_env(tmp_path, {"TESSERA_SECURITY_LOG_LEVEL": "debug"}).security_log_level == "DEBUG"
    with pytest.raises(ConfigurationError, match="TESSERA_SECURITY_LOG_LEVEL"):
        Settings.from_env(tmp_path, {"TESSERA_SECURITY_LOG_LEVEL": "chatty"})
    with pytest.raises(ConfigurationError, match="TESSERA_PROXY_HOPS must be a whole number"):
        Settings.from_env(tmp_path, {"TESSERA_PROXY_HOPS": "one"})
