from __future__ import annotations

import pytest

from vwindow.auth import TokenIssuer, check_secret, hash_secret, turn_credentials
from vwindow.errors import AuthError, ConfigError
from vwindow.models import Role

OLD = "old-secret-0123456789-0123456789-abcdef"
NEW = "new-secret-0123456789-0123456789-abcdef"


def test_roundtrip_and_audience() -> None:
    issuer = TokenIssuer(NEW)
    token, _ = issuer.issue(Role.AGENT, "7", "王芳", 60)
    p = issuer.verify(token, (Role.AGENT,))
    assert (p.role, p.subject, p.name, p.key) == (Role.AGENT, "7", "王芳", "agent:7")
    with pytest.raises(AuthError, match="not for this service"):
        issuer.verify(token, (Role.KIOSK,))


def test_rotation_keeps_old_tokens_valid() -> None:
    token, _ = TokenIssuer(OLD).issue(Role.KIOSK, "1", "k", 60)
    rotated = TokenIssuer(NEW, (OLD,))
    assert rotated.verify(token).subject == "1"
    with pytest.raises(AuthError, match="unknown key"):
        TokenIssuer(NEW).verify(token)


def test_expired_and_short_secret() -> None:
    issuer = TokenIssuer(NEW)
    token, _ = issuer.issue(Role.AGENT, "1", "a", -5)
    with pytest.raises(AuthError, match="expired"):
        issuer.verify(token)
    with pytest.raises(ConfigError, match="32 bytes"):
        TokenIssuer("short")


def test_surveyor_token_carries_scope() -> None:
    issuer = TokenIssuer(NEW)
    token, _ = issuer.issue(Role.SURVEYOR, "3", "s", 60, extra={"case_id": 9, "call_id": 4})
    p = issuer.verify(token, (Role.SURVEYOR,))
    assert (p.case_id, p.call_id) == (9, 4)


def test_password_hashing() -> None:
    stored = hash_secret("demo1234")
    assert check_secret("demo1234", stored)
    assert not check_secret("demo1235", stored)
    assert not check_secret("demo1234", "garbage")


def test_turn_credentials_shape() -> None:
    user, password = turn_credentials("turnsecret", "agent:1/page", 3600)
    expiry, who = user.split(":", 1)
    assert expiry.isdigit() and who == "agent:1/page"
    assert len(password) == 28  # base64 of a 20-byte SHA-1 HMAC
