"""Kiosk enrolment: an administrator issues a one-time code, the kiosk PC redeems it for
its device key.

The code needs no table. It is ``expiry (4 chars) + MAC (12 chars)`` in Crockford
base32, shown as ``XXXX-XXXX-XXXX-XXXX``; the MAC is HMAC-SHA256 under a key derived
from ``auth.secret`` over the kiosk's code, the expiry and the kiosk's *current*
``key_hash``. Redeeming sets a new device key, so the stored hash changes and every code
issued before, this one included, stops verifying: one-time without state. The swap is a
compare-and-set on the old hash, so two PCs racing with one code get one key between them.
60 bits of MAC cannot be guessed online; the expiry (hours, default 24) bounds a code
that leaks. Re-enrolment is also how a lost or replaced PC is locked out, and it
re-activates a kiosk that was disabled.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update

from vwindow import audit
from vwindow.auth import hash_secret
from vwindow.db import Database
from vwindow.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from vwindow.models import Kiosk, Township

logger = logging.getLogger(__name__)

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U
_READS_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})
EXPIRY_CHARS = 4  # hours since the epoch: 20 bits, good until 2089
MAC_CHARS = 12  # 60 bits
CODE_CHARS = EXPIRY_CHARS + MAC_CHARS
DEFAULT_TTL_S = 24 * 3600
UNENROLLED = "!unenrolled"
"""``key_hash`` of a registered kiosk that has no device key yet (matches no key)."""
_CONTEXT = b"vwindow kiosk enrolment v1"


@dataclass(frozen=True)
class EnrolmentCode:
    """What the administrator hands to whoever installs the kiosk PC."""

    code: str
    kiosk_code: str
    kiosk_name: str
    expires_at: datetime


@dataclass(frozen=True)
class EnrolledKiosk:
    """What the kiosk PC gets back: its identity and its new device key (shown once)."""

    kiosk_code: str
    kiosk_name: str
    device_key: str


def _encode(value: int, chars: int) -> str:
    out = []
    for _ in range(chars):
        value, digit = divmod(value, 32)
        out.append(ALPHABET[digit])
    return "".join(reversed(out))


def _decode(text: str) -> int:
    value = 0
    for ch in text:
        value = value * 32 + ALPHABET.index(ch)
    return value


def normalise_code(raw: str) -> str:
    """Upper case, no dashes or spaces, O/I/L read as 0/1; refused unless 16 symbols."""
    code = "".join(raw.split()).replace("-", "").upper().translate(_READS_AS)
    if len(code) != CODE_CHARS or any(ch not in ALPHABET for ch in code):
        raise ValidationError(f"an enrolment code is {CODE_CHARS} letters and digits "
                              "(XXXX-XXXX-XXXX-XXXX)", field="code")
    return code


def format_code(code: str) -> str:
    return "-".join(code[i:i + 4] for i in range(0, len(code), 4))


class Enrolment:
    """Issues and redeems enrolment codes, keyed by the auth secret(s)."""

    def __init__(self, db: Database, secret: str, previous: tuple[str, ...] = (), *,
                 clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ConfigError("kiosk enrolment needs auth.secret (the same on every node)",
                              field="auth.secret")
        self.db = db
        self._clock = clock
        # A key of its own, derived: an enrolment MAC can never pass for a token signature.
        self._keys = [hmac.new(s.encode(), _CONTEXT, hashlib.sha256).digest()
                      for s in (secret, *previous)]

    def _mac(self, key: bytes, kiosk_code: str, expiry: str, key_hash: str) -> str:
        message = "\0".join((kiosk_code, expiry, key_hash)).encode()
        digest = int.from_bytes(hmac.new(key, message, hashlib.sha256).digest()[:8], "big")
        return _encode(digest >> 4, MAC_CHARS)  # the top 60 bits

    async def register_kiosk(self, code: str, name: str, township_code: str, *,
                             actor: str) -> Kiosk:
        """A new kiosk with no device key yet; it logs in once enrolled."""
        async with self.db.session() as s:
            town = (await s.scalars(select(Township).where(
                Township.code == township_code))).first()
            if town is None:
                raise NotFoundError(f"township {township_code!r} does not exist",
                                    field="township")
            if (await s.scalars(select(Kiosk.id).where(Kiosk.code == code))).first():
                raise ConflictError(f"kiosk {code!r} already exists", field="kiosk")
            kiosk = Kiosk(code=code, name=name, township_id=town.id, key_hash=UNENROLLED,
                          active=True)
            s.add(kiosk)
            await s.flush()
            await audit.append(s, actor=actor, action="kiosk.registered",
                               detail={"kiosk": code, "township": township_code})
        logger.info("kiosk %s registered in township %s", code, township_code)
        return kiosk

    async def issue(self, kiosk_code: str, *, actor: str,
                    ttl_s: int = DEFAULT_TTL_S) -> EnrolmentCode:
        """A one-time code for ``kiosk_code``, valid for ``ttl_s`` (rounded up to hours)."""
        if ttl_s <= 0:
            raise ValidationError(f"ttl_s must be positive, got {ttl_s}", field="ttl_s")
        hours = -(-(int(self._clock()) + ttl_s) // 3600)
        expiry = _encode(hours, EXPIRY_CHARS)
        async with self.db.session() as s:
            kiosk = (await s.scalars(select(Kiosk).where(Kiosk.code == kiosk_code))).first()
            if kiosk is None:
                raise NotFoundError(f"kiosk {kiosk_code!r} does not exist", field="kiosk")
            code = expiry + self._mac(self._keys[0], kiosk.code, expiry, kiosk.key_hash)
            expires_at = datetime.fromtimestamp(hours * 3600, UTC)
            await audit.append(s, actor=actor, action="kiosk.enrolment_issued",
                               detail={"kiosk": kiosk.code,
                                       "expires_at": expires_at.isoformat()})
            name = kiosk.name
        logger.info("enrolment code issued for kiosk %s, valid until %s", kiosk_code,
                    expires_at.isoformat())
        return EnrolmentCode(format_code(code), kiosk_code, name, expires_at)

    async def redeem(self, kiosk_code: str, raw_code: str) -> EnrolledKiosk:
        """Swap a valid code for a new device key; the old key and codes stop working."""
        code = normalise_code(raw_code)
        expiry, mac = code[:EXPIRY_CHARS], code[EXPIRY_CHARS:]
        device_key = secrets.token_urlsafe(32)
        new_hash = await asyncio.to_thread(hash_secret, device_key)  # scrypt: ~50 ms
        refused = AuthError("this enrolment code is not valid for this kiosk or has "
                            "already been used; ask for a new one", field="code")
        async with self.db.session() as s:
            kiosk = (await s.scalars(select(Kiosk).where(Kiosk.code == kiosk_code))).first()
            if kiosk is None:
                logger.info("enrolment refused: unknown kiosk")
                raise refused
            old_hash = kiosk.key_hash
            if not any(hmac.compare_digest(mac, self._mac(key, kiosk.code, expiry, old_hash))
                       for key in self._keys):
                logger.info("enrolment refused for kiosk %s: code does not verify", kiosk.code)
                raise refused
            if _decode(expiry) * 3600 <= self._clock():
                raise AuthError("this enrolment code has expired; ask for a new one",
                                field="code")
            result = await s.execute(
                update(Kiosk).where(Kiosk.id == kiosk.id, Kiosk.key_hash == old_hash)
                .values(key_hash=new_hash, active=True))
            if result.rowcount != 1:  # type: ignore[attr-defined]
                raise refused  # another PC redeemed the same code a moment before
            await audit.append(s, actor=f"kiosk:{kiosk.id}", action="kiosk.enrolled",
                               detail={"kiosk": kiosk.code})
            name = kiosk.name
        logger.info("kiosk %s enrolled with a new device key", kiosk_code)
        return EnrolledKiosk(kiosk_code, name, device_key)

