"""The HTTP endpoint: ``/metrics``, ``/healthz``, ``/readyz`` (threaded, optional TLS and basic auth).

* ``/metrics`` -- Prometheus text format rendered directly from the agent's
  metrics (:mod:`.exposition`, the fast path); OpenMetrics, when the scraper
  asks for it, through prometheus_client from the registry holding
  :class:`~pybpf_agent.exporter.AgentCollector`.
* ``/healthz`` -- 200 while the process serves (liveness).
* ``/readyz`` -- 200 once every collector the plan enabled is attached and has
  been read once; 503 before.  The body (JSON) lists every collector with its
  state, hook and reason; disabled and degraded collectors never block readiness.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional, Tuple

__all__ = ["MetricsServer"]

log = logging.getLogger("pybpf_agent.http")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class MetricsServer:
    """Serve the agent over HTTP(S) in a background thread."""

    def __init__(self, address: Tuple[str, int], registry: Any, ready: Callable[[], Tuple[bool, dict]],
                 *, cert_file: str = "", key_file: str = "", username: str = "", password: str = "",
                 metrics_path: str = "/metrics", text: Optional[Callable[[], bytes]] = None):
        self.registry = registry
        self.text = text
        self.ready = ready
        self.metrics_path = metrics_path
        self._auth = None
        if username or password:
            token = base64.b64encode(f"{username}:{password}".encode()).decode()
            self._auth = f"Basic {token}"
        handler = self._handler_class()
        host, port = address
        server_cls = _Server
        if ":" in host:
            import socket
            server_cls = type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
        self.httpd = server_cls((host, port), handler)
        self.tls = bool(cert_file)
        if cert_file:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(cert_file, key_file or None)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self._thread: Optional[threading.Thread] = None

    @property
    def address(self) -> Tuple[str, int]:
        return self.httpd.server_address[:2]

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="pybpf-agent-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _handler_class(self) -> type:
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "pybpf-agent"
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: Any) -> None:   # route to logging, debug level
                log.debug("%s %s", self.address_string(), fmt % args)

            def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8",
                      extra: Optional[dict] = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _authorized(self) -> bool:
                if server._auth is None:
                    return True
                got = self.headers.get("Authorization", "")
                if hmac.compare_digest(got.encode(), server._auth.encode()):
                    return True
                self._send(401, b"unauthorized\n", extra={"WWW-Authenticate": 'Basic realm="pybpf-agent"'})
                return False

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    self._send(200, b"ok\n")
                    return
                if not self._authorized():
                    return
                if path == server.metrics_path:
                    from prometheus_client.exposition import choose_encoder
                    accept = self.headers.get("Accept", "")
                    encoder, ctype = choose_encoder(accept)
                    try:
                        if server.text is not None and "application/openmetrics-text" not in accept:
                            from .exposition import CONTENT_TYPE
                            body, ctype = server.text(), CONTENT_TYPE
                        else:
                            body = encoder(server.registry)
                    except Exception as e:   # never kill the server thread
                        log.exception("scrape failed")
                        self._send(500, f"scrape failed: {e}\n".encode())
                        return
                    self._send(200, body, ctype)
                elif path == "/readyz":
                    ok, detail = server.ready()
                    self._send(200 if ok else 503, (json.dumps(detail, indent=1) + "\n").encode(),
                               "application/json")
                elif path == "/":
                    self._send(200, (f"<html><body><h1>pybpf-agent</h1><a href='{server.metrics_path}'>"
                                     "metrics</a> <a href='/readyz'>readyz</a> <a href='/healthz'>"
                                     "healthz</a></body></html>\n").encode(), "text/html")
                else:
                    self._send(404, b"not found\n")

        return Handler
