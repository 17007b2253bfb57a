"""Tokens (JWT, HS256, one audience per role, key rotation) and password hashing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

from vwindow.errors import AuthError, ConfigError
from vwindow.models import Role

ISSUER = "vwindow"


def audience(role: Role) -> str:
    return f"vwindow:{role.value}"


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for."""

    role: Role
    subject: str
    name: str
    case_id: int | None = None
    call_id: int | None = None
    token_id: str = ""

    @property
    def key(self) -> str:
        """A stable identity for presence: ``role:subject``."""
        return f"{self.role.value}:{self.subject}"


class TokenIssuer:
    """Signs with the current key; verifies with the current and any previous key.

    ``kid`` is a short fingerprint of the key, so verification picks the right key and a
    rotation (new secret, old one moved to ``previous``) logs nobody out.
    """

    def __init__(self, secret: str, previous: tuple[str, ...] = ()) -> None:
        for key in (secret, *previous):
            if len(key.encode()) < 32:
                raise ConfigError("auth secrets must be at least 32 bytes long",
                                  field="auth.secret")
        self._current = secret
        self._keys = {self._kid(k): k for k in (secret, *previous)}

    @staticmethod
    def _kid(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()[:12]

    def issue(
        self,
        role: Role,
        subject: str,
        name: str,
        ttl_s: int,
        *,
        extra: dict[str, Any] | None = None,
    ) -> tuple[str, int]:
        now = int(time.time())
        exp = now + ttl_s
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": audience(role),
            "sub": subject,
            "name": name,
            "role": role.value,
            "iat": now,
            "exp": exp,
            "jti": secrets.token_hex(8),
        }
        if extra:
            claims.update(extra)
        token = jwt.encode(
            claims, self._current, algorithm="HS256", headers={"kid": self._kid(self._current)}
        )
        return token, exp

    def verify(self, token: str, roles: tuple[Role, ...] | None = None) -> Principal:
        """Check signature, issuer, expiry and audience (one of ``roles``)."""
        allowed = roles or tuple(Role)
        if not token.isascii():
            raise AuthError("token is malformed: not ASCII", field="token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as err:
            raise AuthError(f"token is malformed: {err}", field="token") from err
        key = self._keys.get(str(header.get("kid", "")))
        if key is None:
            raise AuthError("token was signed with an unknown key", field="token")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["HS256"],
                audience=[audience(r) for r in allowed],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "aud", "sub", "iss"]},
            )
        except jwt.ExpiredSignatureError as err:
            raise AuthError("token has expired", field="token") from err
        except jwt.InvalidAudienceError as err:
            names = ", ".join(r.value for r in allowed)
            raise AuthError(f"token is not for this service (wanted: {names})",
                            field="token") from err
        except jwt.PyJWTError as err:
            raise AuthError(f"token is invalid: {err}", field="token") from err
        try:
            role = Role(claims["role"])
        except (KeyError, ValueError) as err:
            raise AuthError("token names no valid role", field="token") from err
        if claims["aud"] != audience(role):
            raise AuthError("token role and audience disagree", field="token")
        return Principal(
            role=role,
            subject=str(claims["sub"]),
            name=str(claims.get("name", "")),
            case_id=_opt_int(claims.get("case_id")),
            call_id=_opt_int(claims.get("call_id")),
            token_id=str(claims.get("jti", "")),
        )


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) else None


# scrypt parameters: ~16 MiB, ~50 ms here — fine for logins, hard to brute-force.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def check_secret(secret: str, stored: str) -> bool:
    try:
        scheme, salt_b64, digest_b64 = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    salt = base64.b64decode(salt_b64)
    expected = base64.b64decode(digest_b64)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    return hmac.compare_digest(digest, expected)


def turn_credentials(secret: str, participant: str, ttl_s: int) -> tuple[str, str]:
    """coturn ``use-auth-secret`` credentials: ``<expiry>:<participant>`` and its HMAC."""
    username = f"{int(time.time()) + ttl_s}:{participant}"
    mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(mac).decode()
