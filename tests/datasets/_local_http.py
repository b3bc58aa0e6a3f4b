"""A local HTTP server on 127.0.0.1 for the download tests (no internet).

Test modules import ``Server`` (``from _local_http import Server``) and make a fixture of it. Not a
conftest.py: a second ``conftest`` module would shadow tests/conftest.py for ``from conftest import``.

The server supports ``Range`` requests (206 / 416), can cut a transfer short once, can ignore
ranges, can stall to trigger the client timeout, and can serve a queue of bodies in turn (a broken
copy, then the real one).
"""

from __future__ import annotations

import http.server
import re
import socket
import threading
import time


class Server:
    """Serves ``files`` (path -> bytes); records requests; ``cut``: path -> bytes sent before a drop (once)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.queue: dict[str, list[bytes]] = {}  # path -> bodies served in turn (then ``files``)
        self.cut: dict[str, int] = {}
        self.ranges = True
        self.stall_s = 0.0
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                if server.stall_s:
                    time.sleep(server.stall_s)
                queued = server.queue.get(self.path)
                data = queued.pop(0) if queued else server.files.get(self.path)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if server.ranges and match:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes" if server.ranges else "none")
                self.end_headers()
                cut = server.cut.pop(self.path, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        class Quiet(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client that timed out or resumed: broken pipes are expected

        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
