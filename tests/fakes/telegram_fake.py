"""A loopback fake of the Telegram Bot API's sendMessage, for the notification tests.

What it does is what core.telegram.org/bots/api documents:
- requests go to {base}/bot<token>/<method> (POST JSON here; the API also takes form data);
- every answer is a JSON object with `ok`; on success `result` (for sendMessage the Message sent:
  message_id, date, chat {id, type}, text); on failure `error_code` (the HTTP status) and
  `description`, and for flood control (429) `parameters.retry_after` in seconds;
- an unknown token answers 401 "Unauthorized", an unknown method 404 "Not Found";
- sendMessage needs `chat_id` (an integer or "@channelusername": an unknown chat is 400 "Bad
  Request: chat not found") and `text`, 1-4096 characters after entity parsing ("Bad Request:
  message text is empty"); `parse_mode` is HTML, Markdown or MarkdownV2; with HTML only the
  documented tags are allowed and a bare `<` or `&` is "Bad Request: can't parse entities".
Modelled, not observed: message ids counting from 1 per fake.

`flood(n, retry_after)` makes the next n sendMessage calls answer 429; `fail(n)` makes them 502.
"""

from __future__ import annotations

import html.parser
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HTML_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "span", "tg-spoiler",
             "blockquote", "tg-emoji"}
ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")


class _HtmlCheck(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.bad: str | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag not in HTML_TAGS:
            self.bad = f"unsupported start tag \"{tag}\""

    def handle_data(self, data: str) -> None:
        if "<" in data or ">" in data:
            self.bad = "unescaped < or >"
        self.text.append(data)

    def handle_entityref(self, name: str) -> None:
        self.text.append(f"&{name};")

    def handle_charref(self, name: str) -> None:
        self.text.append(f"&#{name};")


def parse_html(text: str) -> tuple[str | None, str]:
    """(error, the text without tags)."""
    bare = ENTITY.sub("", text)
    if "&" in bare:
        return "unsupported or unescaped &", text
    checker = _HtmlCheck()
    checker.feed(text)
    checker.close()
    plain = "".join(checker.text)
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&amp;", "&")):
        plain = plain.replace(entity, char)
    return checker.bad, plain


class TelegramFake:
    def __init__(self, tokens: set[str], chats: set[str]) -> None:
        self.tokens, self.chats = set(tokens), set(chats)
        self.messages: list[dict[str, Any]] = []   # what sendMessage accepted
        self.requests: list[str] = []              # every path asked for (tokens included: a test reads them)
        self._flood: tuple[int, int] = (0, 0)
        self._fail = 0
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                status, answer = fake.handle(self.path, raw, self.headers.get("Content-Type", ""))
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "TelegramFake":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def flood(self, n: int, retry_after: int) -> None:
        self._flood = (n, retry_after)

    def fail(self, n: int) -> None:
        self._fail = n

    @staticmethod
    def _error(code: int, description: str, **parameters: Any) -> tuple[int, dict[str, Any]]:
        answer: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if parameters:
            answer["parameters"] = parameters
        return code, answer

    def handle(self, path: str, raw: bytes, content_type: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(path)
            match = re.fullmatch(r"/bot([^/]+)/(\w+)", path)
            if match is None:
                return self._error(404, "Not Found")
            token, method = match.groups()
            if token not in self.tokens:
                return self._error(401, "Unauthorized")
            if method != "sendMessage":
                return self._error(404, "Not Found")
            if "application/json" not in content_type:
                return self._error(400, "Bad Request: this fake takes JSON bodies only")
            try:
                params = json.loads(raw or b"{}")
            except ValueError:
                return self._error(400, "Bad Request: can't parse JSON")
            if self._flood[0] > 0:
                self._flood = (self._flood[0] - 1, self._flood[1])
                return self._error(429, f"Too Many Requests: retry after {self._flood[1]}",
                                   retry_after=self._flood[1])
            if self._fail > 0:
                self._fail -= 1
                return self._error(502, "Bad Gateway")
            chat = params.get("chat_id")
            if chat is None:
                return self._error(400, "Bad Request: chat_id is empty")
            if str(chat) not in self.chats:
                return self._error(400, "Bad Request: chat not found")
            text = params.get("text")
            if not isinstance(text, str) or not text.strip():
                return self._error(400, "Bad Request: message text is empty")
            mode = params.get("parse_mode")
            if mode not in (None, "HTML", "Markdown", "MarkdownV2"):
                return self._error(400, "Bad Request: unsupported parse_mode")
            plain = text
            if mode == "HTML":
                bad, plain = parse_html(text)
                if bad is not None:
                    return self._error(400, f"Bad Request: can't parse entities: {bad}")
            if len(plain) > 4096:
                return self._error(400, "Bad Request: message is too long")
            message = {"message_id": len(self.messages) + 1, "date": int(time.time()),
                       "chat": {"id": int(chat) if str(chat).lstrip("-").isdigit() else chat,
                                "type": "private" if str(chat).lstrip("-").isdigit() else "channel"},
                       "text": plain}
            self.messages.append({**message, "parse_mode": mode, "raw_text": text})
            return 200, {"ok": True, "result": message}
