"""A stand-in for the providers' APIs on a laptop: answers replies the way Telegram, the
Graph API and Twilio document, and prints what it was sent. Point a channel's API base
URL at it (http://127.0.0.1:8999; loopback is allowed in DEBUG):

    manage.py provider_stub --port 8999

Not for production: it accepts anything and keeps nothing.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from django.core.management.base import BaseCommand, CommandParser, OutputWrapper

_ids = itertools.count(1)
_BOT_PATH = re.compile(r"^/bot[^/]+/(\w+)$")
_GRAPH_SEND = re.compile(r"^(/v[\d.]+)?/\d+/messages$")
_TWILIO_SEND = re.compile(r"^/2010-04-01/Accounts/AC\w+/Messages\.json$")


class _Handler(BaseHTTPRequestHandler):
    output: OutputWrapper  # the command's stdout, set on the subclass the command builds

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(min(length, 1 << 20))
        path = self.path.split("?")[0]
        number = next(_ids)
        if match := _BOT_PATH.match(path):
            method = match.group(1)
            self._log(f"Telegram {method}", raw)
            if method == "getUpdates":
                time.sleep(1)  # a short long-poll with nothing new
                self._json(200, {"ok": True, "result": []})
            elif method == "sendMessage":
                chat_id = json.loads(raw or b"{}").get("chat_id")
                self._json(
                    200,
                    {
                        "ok": True,
                        "result": {"message_id": number, "chat": {"id": chat_id}, "date": int(time.time())},
                    },
                )
            else:
                self._json(200, {"ok": True, "result": True})
        elif _GRAPH_SEND.match(path):
            body = json.loads(raw or b"{}")
            self._log("Graph API messages", raw)
            if body.get("messaging_product") == "whatsapp":
                to = body.get("to")
                self._json(
                    200,
                    {
                        "messaging_product": "whatsapp",
                        "contacts": [{"input": to, "wa_id": to}],
                        "messages": [{"id": f"wamid.stub-{number}"}],
                    },
                )
            else:
                self._json(
                    200,
                    {"recipient_id": body.get("recipient", {}).get("id"), "message_id": f"m_stub-{number}"},
                )
        elif _TWILIO_SEND.match(path):
            form = {key: values[0] for key, values in parse_qs(raw.decode()).items()}
            self._log("Twilio Messages", raw)
            self._json(
                201,
                {
                    "sid": f"SM{number:032x}",
                    "status": "queued",
                    "to": form.get("To"),
                    "from": form.get("From"),
                },
            )
        else:
            self._log(f"unknown {path}", raw)
            self._json(404, {"error": "not a stubbed endpoint"})

    def _json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _log(self, what: str, raw: bytes) -> None:
        self.output.write(f"{what}: {raw[:500].decode('utf-8', 'replace')}")

    def log_message(self, format: str, *args: Any) -> None:
        # The default access log prints the path, and Telegram's paths hold the bot token.
        return


class Command(BaseCommand):
    help = "Run a local stand-in for the Telegram, Graph and Twilio send APIs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8999)

    def handle(self, *args: Any, **options: Any) -> None:
        handler = type("Handler", (_Handler,), {"output": self.stdout})
        server = ThreadingHTTPServer(("127.0.0.1", options["port"]), handler)
        self.stdout.write(f"Provider stub on http://127.0.0.1:{options['port']} (Ctrl-C to stop)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
