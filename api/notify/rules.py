"""A notification rule as the API takes it: what to be told (an event kind and its filter) and
where (a channel and its target). Validated whole before anything is stored: a bad value is a
422 naming its field (`level`, `channel.url`, `channel.bot_token`, ...).

Kinds: `fill` (a bot's fill), `signal` (a bot's signal), `bot_state` (a bot stopped, with which
`stop_reasons`: by default the ones a person must look at: KILLED, ERROR, STORE_ERROR,
LEASE_LOST), `daily_loss` (an account's daily loss limit reached: its state turned REDUCING or
HALTED for DAILY_LOSS), `price` (a bot's recorded price crossed `level` going `direction`).
Subscribers may ask for `signal` and `price` (prices from the signals they may see); fills, stops
and losses are their owner's business.

Webhook targets must be http(s) URLs whose host resolves to public addresses only (no loopback,
private, link-local, multicast or reserved address: a rule must not make the server probe its
own network), unless an address falls in `Settings.notify_allowed_networks`. The check runs when
the rule is saved and again before each request (a name may resolve elsewhere later), and
redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from live.books import STOP_REASONS

KINDS = ("fill", "signal", "bot_state", "daily_loss", "price")
SUBSCRIBER_KINDS = ("signal", "price")
DEFAULT_STOP_REASONS = ("KILLED", "ERROR", "STORE_ERROR", "LEASE_LOST")
Kind = Literal["fill", "signal", "bot_state", "daily_loss", "price"]
StopReason = Literal["END_OF_FEED", "STOPPED", "KILLED", "STORE_ERROR", "LEASE_LOST", "ERROR"]
assert set(StopReason.__args__) == set(STOP_REASONS)  # type: ignore[attr-defined]  # one list of reasons

TELEGRAM_TOKEN = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{20,100}$")   # "<bot id>:<secret>" (BotFather)
TELEGRAM_CHAT = re.compile(r"^(-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31})$")  # a chat id, or @channelusername
EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")


class WebhookChannel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["webhook"]
    url: str = Field(max_length=2048, description="http(s) URL receiving a signed JSON POST")
    secret: SecretStr | None = Field(None, min_length=16, max_length=256,
                                     description="HMAC-SHA256 key; omitted: one is generated and shown once")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials (sign with the secret instead)")
        try:  # urlsplit parses the port only when asked: ":99999" and ":abc" raise here (were a 500)
            port = parts.port
        except ValueError:
            raise ValueError("must have a port from 1 to 65535, or none") from None
        if port == 0:
            raise ValueError("must have a port from 1 to 65535, or none")
        return value


class TelegramChannel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["telegram"]
    chat_id: str = Field(max_length=33, description="a chat id (a number) or @channelusername")
    bot_token: SecretStr | None = Field(None, description="the bot's token from BotFather; stored encrypted, never "
                                                          "shown; omitted on an update: the stored one is kept")

    @field_validator("chat_id", mode="before")
    @classmethod
    def _chat(cls, value: Any) -> Any:
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(text, str) or not TELEGRAM_CHAT.match(text):
            raise ValueError("must be a numeric chat id or @channelusername")
        return text

    @field_validator("bot_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not TELEGRAM_TOKEN.match(value.get_secret_value()):
            raise ValueError("must be a bot token as BotFather gives it: <digits>:<letters, digits, _ or ->")
        return value


class EmailChannel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["email"]
    address: str = Field(max_length=254)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not EMAIL.match(value):
            raise ValueError("must be an email address (name@domain)")
        return value


Channel = Annotated[WebhookChannel | TelegramChannel | EmailChannel, Field(discriminator="type")]


class RuleIn(BaseModel):
    """A rule. Field order matters: each filter field is checked against `kind`, read before it."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field("", max_length=64)
    kind: Kind
    bot_id: str | None = Field(None, min_length=1, max_length=64,
                               description="trader: your bot's name; subscriber: a published bot's runtime id; "
                                           "omitted: every bot you may see")
    symbol: str | None = Field(None, min_length=1, max_length=64, validate_default=True,
                               description="required for price alerts")
    level: Decimal | None = Field(None, gt=0, max_digits=30, decimal_places=18, validate_default=True,
                                  description="price alerts: the price level")
    direction: Literal["above", "below"] | None = Field(None, validate_default=True,
                                                        description="price alerts: crossing upwards or downwards")
    stop_reasons: list[StopReason] | None = Field(None, min_length=1, max_length=len(STOP_REASONS),
                                                  validate_default=True)
    channel: Channel
    enabled: bool = True

    @field_validator("bot_id", "symbol")
    @classmethod
    def _filter(cls, value: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        if kind == "daily_loss" and value is not None:
            raise ValueError("not for daily_loss rules (they watch your accounts)")
        if kind == "price" and info.field_name == "symbol" and value is None:
            raise ValueError("required for a price alert")
        return value

    @field_validator("level", "direction")
    @classmethod
    def _price_only(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("kind")
        if kind == "price" and value is None:
            raise ValueError("required for a price alert")
        if kind != "price" and kind is not None and value is not None:
            raise ValueError(f"only for price alerts, not {kind}")
        return value

    @field_validator("stop_reasons")
    @classmethod
    def _stops(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        kind = info.data.get("kind")
        if kind is not None and kind != "bot_state" and value is not None:
            raise ValueError(f"only for bot_state rules, not {kind}")
        if kind == "bot_state":
            return sorted(set(value or DEFAULT_STOP_REASONS))
        return value


# -- where a webhook may point ----------------------------------------------------------------------------
class UnsafeTarget(ValueError):
    """A webhook host that resolves to an address this server must not call."""


IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d, which ipaddress calls global
NAT64 = ipaddress.ip_network("64:ff9b::/96")      # the well-known NAT64 prefix: the IPv4 address in its low bits


def _embedded(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 one carries to a relay or translator: mapped, 6to4 (2002::/16,
    which ipaddress calls global even around 127.0.0.1), Teredo's server and client, IPv4-compatible
    and NAT64. Each must be public too (V.md #12)."""
    found = [a for a in (address.ipv4_mapped, address.sixtofour, *(address.teredo or ())) if a is not None]
    if address in IPV4_COMPATIBLE or address in NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _blocked(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded(address)
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(_blocked(inner) for inner in embedded):
            return True
    return (address.is_loopback or address.is_private or address.is_link_local or address.is_multicast
            or address.is_reserved or address.is_unspecified or not address.is_global)


def check_target(url: str, allowed: tuple[str, ...]) -> None:
    """Refuse (UnsafeTarget) a URL whose host is, or resolves to, a non-public address outside
    `allowed` (CIDRs). Every resolved address must pass: a name with one public and one private
    address is refused."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a URL stored before the channel checked its port
        raise UnsafeTarget("the URL's port is not a number from 1 to 65535") from None
    networks = [ipaddress.ip_network(n, strict=False) for n in allowed]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnsafeTarget(f"host {host!r} does not resolve") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if _blocked(address) and not any(address in n for n in networks):
            raise UnsafeTarget(f"host {host!r} resolves to a non-public address ({address}): refused")
