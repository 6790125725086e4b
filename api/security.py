"""Secrets: argon2 password hashes, JWT access tokens, opaque refresh tokens and API keys (stored
as SHA-256: they are 256-bit random, so a slow hash buys nothing), Fernet for broker credentials."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken

ALGORITHM = "HS256"
API_KEY_PREFIX = "tbk_"
_hasher = PasswordHasher()  # argon2id, the library's recommended (RFC 9106 low-memory) parameters
# a hash to verify against when the user does not exist, so both paths take the same time
_DUMMY = _hasher.hash("not a password")


def set_hash_cost(time_cost: int, memory_kib: int) -> None:
    """Change the cost of NEW hashes (existing ones verify with the parameters they carry).
    Tests lower it to keep a suite of hundreds of logins fast; production keeps the defaults."""
    global _hasher, _DUMMY
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)
    _DUMMY = _hasher.hash("not a password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


MAX_USER_ID = 2**63 - 1  # the store's BIGINT: a larger `sub` must not reach a query (it was a 500)
MIN_SECRET_BYTES = 32    # RFC 7518 3.2: an HS256 key at least as long as the hash


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What a valid access token says: who, and which login session (refresh family) it belongs
    to, so that revoking the family (logout) also ends its access tokens at once."""

    user_id: int
    family: str
    role: str


def access_token(secret: str, user_id: int, role: str, ttl_s: int, family: str) -> str:
    now = int(time.time())
    claims = {"sub": str(user_id), "role": role, "type": "access", "fam": family, "iat": now,
              "exp": now + ttl_s, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def parse_user_id(sub: object) -> int | None:
    """A `sub` claim as a user id: canonical ASCII digits only (str.isdigit() accepts "١٢",
    Arabic-Indic digits, which int() then parses; no sign, spaces or leading zeros), within
    1..2**63-1. Anything else is no user at all."""
    if not isinstance(sub, str) or not sub.isascii() or not sub.isdigit() or len(sub) > 19 or sub[0] == "0":
        return None
    value = int(sub)
    return value if value <= MAX_USER_ID else None


def decode_access(secret: str, token: str) -> AccessClaims | None:
    """The claims of a valid, unexpired, well-formed access token, else None. A token without a
    refresh family (issued before families were carried) is refused: it could not be revoked."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM],
                            options={"require": ["exp", "sub", "type", "fam"]})
    except jwt.InvalidTokenError:
        return None
    user_id = parse_user_id(claims.get("sub"))
    family, role = claims.get("fam"), claims.get("role")
    if claims.get("type") != "access" or user_id is None or not isinstance(family, str) \
            or not 1 <= len(family) <= 64 or not isinstance(role, str):
        return None
    return AccessClaims(user_id, family, role)


def new_opaque() -> str:
    return secrets.token_urlsafe(32)


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Vault:
    """Broker credentials encrypted at rest with one Fernet key."""

    def __init__(self, key: str) -> None:
        self._fernet = Fernet(key.encode() if isinstance(key, str) else key)

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ValueError("credentials cannot be decrypted with the configured TICKBRIDGE_ACCOUNTS_KEY") from None


def mask(secret: str) -> str:
    """What may be shown of a credential: its last four characters."""
    return "****" + secret[-4:] if len(secret) >= 8 else "****"
