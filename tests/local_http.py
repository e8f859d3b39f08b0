"""What the local hubs of the tests (tests/hub_server.py, tests/modelscope_server.py) share: a quiet JSON
request handler and a server on a free loopback port, run in a thread for the length of a `with` block."""

import contextlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # quiet test output
        return

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""  # always read it: keep-alive depends on it

    def _drop(self) -> None:
        """Close the connection without an answer (a reset, as a flaky network gives)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send(self, status: int, payload=None, headers: dict | None = None, raw: bytes | None = None) -> None:
        body = raw if raw is not None else (json.dumps(payload).encode() if payload is not None else b"")
        self.send_response(status)
        if raw is None:
            self.send_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class LocalServer:
    """`handler` bound to `state` (its class attribute), on 127.0.0.1 at a free port: `with Server(...) as s:`
    then s.url."""

    def __init__(self, handler: type[JsonHandler], state):
        self.state = state
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), type("BoundHandler", (handler,), {"state": state}))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        state.base_url = self.url
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
