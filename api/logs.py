"""No secret in a log: credentials in a URL's query are written as ***.

Streams accept ?token= and ?api_key= because a browser's EventSource cannot set headers, and
uvicorn writes every request's path with its query string: to its access log ("uvicorn.access",
HTTP requests) and, for WebSockets, to its error log ("uvicorn.error", '"WebSocket /path?..."
[accepted]'). install_redaction() puts a filter on both loggers that rewrites those values before
any handler formats the record. Parameter names are compared after percent-decoding, the way the
app reads them (?%74oken= is ?token= to Starlette), and case-insensitively.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

SENSITIVE = frozenset({"token", "api_key", "access_token", "refresh_token", "password", "secret"})
LOGGERS = ("uvicorn.access", "uvicorn.error")
MASK = "***"

# a query parameter: after ? or &, a name, =, a value up to the next & or a space or quote
_PARAM = re.compile(r"(?P<lead>[?&])(?P<name>[^=&\s\"?#]+)=(?P<value>[^&\s\"#]*)")


def redact(text: str) -> str:
    """`text` with the value of every sensitive query parameter replaced by ***."""
    if "=" not in text:
        return text

    def mask(match: re.Match[str]) -> str:
        name = unquote_plus(match.group("name")).strip().lower().replace("-", "_")
        if name not in SENSITIVE:
            return match.group(0)
        return f"{match.group('lead')}{match.group('name')}={MASK}"

    return _PARAM.sub(mask, text)


class RedactQuerySecrets(logging.Filter):
    """Rewrites a record's message and string arguments in place (so every handler, whatever
    its format, sees the redacted text); never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


def install_redaction() -> None:
    """Add the filter to uvicorn's loggers, once. Logger filters survive uvicorn's dictConfig
    (which replaces handlers, not filters), so this may run before or after uvicorn.Config."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactQuerySecrets) for f in logger.filters):
            logger.addFilter(RedactQuerySecrets())
