"""The channels: a signed webhook, Telegram's Bot API, email over SMTP. Each send is one attempt
and answers an Outcome; the dispatcher decides about retries from it (`retryable`,
`retry_after_s`). No Outcome carries a secret: error texts are built here from the status and
the error's type, never from an exception's message or a URL (a Telegram URL holds the token).

Webhook: POST of the JSON body {"id", "event", "kind", "rule_id", "timestamp", "data"} with
  X-Tickbridge-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes under the rule's secret>
  X-Tickbridge-Timestamp: the body's `timestamp` (unix seconds): it is inside the signed bytes,
      so a receiver that checks the signature and refuses old timestamps refuses replays
  X-Tickbridge-Delivery: the delivery id (the same on every retry: receivers can deduplicate)
  2xx is delivered; 5xx, 408, 425, 429 (its Retry-After honoured) and timeouts / connection errors
  are retried; any other 4xx is final. Redirects are not followed.
Telegram: POST {telegram_api_base}/bot<token>/sendMessage with {"chat_id", "text", "parse_mode":
  "HTML"} (core.telegram.org/bots/api#sendmessage); the answer is {"ok": true, "result": ...} or
  {"ok": false, "error_code", "description", "parameters": {"retry_after"}}: 429 and 5xx retried.
Email: smtplib with a timeout, STARTTLS when configured, plain text.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx

from api.notify.rules import UnsafeTarget, check_target
from api.settings import Settings

SIGNATURE_HEADER = "X-Tickbridge-Signature"
TIMESTAMP_HEADER = "X-Tickbridge-Timestamp"
DELIVERY_HEADER = "X-Tickbridge-Delivery"
RETRY_STATUSES = {408, 425, 429}
MAX_RETRY_AFTER_S = 3600.0


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    retryable: bool = False
    http_status: int | None = None
    error: str | None = None
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """What a channel sends: the delivery's identity and its event, and the rule's target."""

    delivery_id: int
    rule_id: int
    event_key: str
    kind: str
    payload: dict[str, Any]
    target: dict[str, Any]
    secret: str | None          # decrypted: the HMAC key, or the Telegram bot token
    timestamp: int              # unix seconds, signed into a webhook's body


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_body(message: Message) -> bytes:
    return json.dumps({"id": message.delivery_id, "event": message.event_key, "kind": message.kind,
                       "rule_id": message.rule_id, "timestamp": message.timestamp, "data": message.payload},
                      separators=(",", ":"), sort_keys=True, default=str).encode()


def _retry_after(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None  # an HTTP-date is possible; the backoff applies then
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _http_error(error: httpx.HTTPError) -> Outcome:
    # the type only: httpx messages may quote the URL, and a Telegram URL carries the bot token
    return Outcome(False, retryable=True, error=f"request failed: {type(error).__name__}")


def send_webhook(message: Message, settings: Settings) -> Outcome:
    url = str(message.target.get("url", ""))
    try:
        check_target(url, settings.notify_allowed_networks)
    except UnsafeTarget as refused:
        return Outcome(False, retryable=False, error=str(refused))
    body = webhook_body(message)
    headers = {"Content-Type": "application/json", "User-Agent": "tickbridge-notify/1",
               SIGNATURE_HEADER: sign(message.secret or "", body), TIMESTAMP_HEADER: str(message.timestamp),
               DELIVERY_HEADER: str(message.delivery_id)}
    try:
        with httpx.Client(timeout=settings.notify_http_timeout_s, follow_redirects=False, trust_env=False) as client:
            response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as error:
        return _http_error(error)
    status = response.status_code
    if 200 <= status < 300:
        return Outcome(True, http_status=status)
    retryable = status >= 500 or status in RETRY_STATUSES
    return Outcome(False, retryable=retryable, http_status=status, error=f"HTTP {status}",
                   retry_after_s=_retry_after(response.headers.get("Retry-After")) if status in (429, 503) else None)


def text_of(kind: str, payload: dict[str, Any]) -> str:
    """One line a person reads (Telegram, email), from an event's payload."""
    bot = payload.get("bot_id")
    if kind == "fill":
        return f"{bot}: {payload['side']} {payload['qty']} {payload['symbol']} at {payload['price']}"
    if kind == "signal":
        side = {1: "long", -1: "short", 0: "flat"}.get(payload.get("direction"), payload.get("direction"))
        return f"{bot}: signal {side} {payload['symbol']}" + (f" at {payload['price']}" if payload.get("price") else "")
    if kind == "bot_state":
        return f"{bot} stopped ({payload['stop_reason']}): {payload.get('message') or ''}".rstrip(": ")
    if kind == "daily_loss":
        return f"account {payload['account']}: daily loss limit reached ({payload['state']})"
    if kind == "price":
        return (f"{payload.get('symbol')} crossed {payload['direction']} {payload['level']}: {payload['price']}"
                f" ({bot})")
    return str(payload.get("text", "tickbridge test notification"))


def send_telegram(message: Message, settings: Settings) -> Outcome:
    token = message.secret or ""
    url = f"{settings.telegram_api_base.rstrip('/')}/bot{token}/sendMessage"
    body = {"chat_id": message.target.get("chat_id"), "parse_mode": "HTML",
            "text": html.escape(text_of(message.kind, message.payload), quote=False)}
    try:
        with httpx.Client(timeout=settings.notify_http_timeout_s, follow_redirects=False, trust_env=False) as client:
            response = client.post(url, json=body)
    except httpx.HTTPError as error:
        return _http_error(error)
    status = response.status_code
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    if status == 200 and isinstance(answer, dict) and answer.get("ok") is True:
        return Outcome(True, http_status=status)
    answer = answer if isinstance(answer, dict) else {}
    description = str(answer.get("description", ""))[:200]
    if token:
        description = description.replace(token, "***")
    retry_after = _retry_after((answer.get("parameters") or {}).get("retry_after")) if status == 429 else None
    return Outcome(False, retryable=status >= 500 or status == 429, http_status=status,
                   error=f"HTTP {status}" + (f": {description}" if description else ""), retry_after_s=retry_after)


def send_email(message: Message, settings: Settings) -> Outcome:
    if not settings.smtp_host:
        return Outcome(False, retryable=False, error="no SMTP server configured")
    mail = EmailMessage()
    mail["From"] = settings.smtp_from
    mail["To"] = str(message.target.get("address"))
    text = text_of(message.kind, message.payload)
    mail["Subject"] = "tickbridge: " + " ".join(text.split())[:120]  # one line: a header never takes a newline
    mail.set_content(text + "\n\n" + json.dumps(message.payload, indent=2, sort_keys=True, default=str) + "\n")
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_s) as smtp:
            if settings.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password or "")
            smtp.send_message(mail)
    except smtplib.SMTPResponseException as error:
        code = int(error.smtp_code)
        return Outcome(False, retryable=400 <= code < 500, error=f"SMTP {code}")
    except (smtplib.SMTPException, OSError) as error:
        return Outcome(False, retryable=True, error=f"SMTP failed: {type(error).__name__}")
    return Outcome(True)


SENDERS = {"webhook": send_webhook, "telegram": send_telegram, "email": send_email}


def send(channel: str, message: Message, settings: Settings) -> Outcome:
    return SENDERS[channel](message, settings)
