"""A loopback HTTP proxy that injects faults in front of a real server (an `mlflow server`), for fault tests.

    with FaultProxy(upstream_port) as proxy:            # http://127.0.0.1:{proxy.port} forwards everything
        proxy.fail(503, match="/registered-models/alias")  # answer 503 to those requests, for good
        proxy.fail(401, times=3)                          # the next 3 requests: 401, then forward again
        proxy.fail("reset", seconds=5)                    # close the connection without an answer, for 5 s
        proxy.fail("slow", delay=2.0)                     # forward, after waiting 2 s
        proxy.fail("lost", match="/runs/log-batch", times=2)  # forward, then drop the connection: done, no answer
        proxy.fail(504, after=3, seconds=5)               # from 3 s from now, for 5 s
        proxy.fail(504, forward=True)                     # forward, then answer 504 (a gateway that timed out)
        proxy.clear()

A rule applies to requests whose path contains `match` (and whose method is `method`, if given); the
first live rule wins. `proxy.seen` lists (method, path, what was done) for every request.
"""
from __future__ import annotations

import http.client
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Rule:
    # an HTTP status to answer, "reset" (drop the connection), "slow" (forward after `delay`) or "lost" (forward,
    # then drop the connection: the server did it, the client never hears)
    fault: int | str
    match: str = ""
    method: str | None = None
    times: int | None = None  # how many requests it applies to; None: unlimited
    until: float | None = None  # time.monotonic() after which it no longer applies; None: for good
    delay: float = 0.0
    start: float = 0.0  # time.monotonic() from which it applies
    forward: bool = False  # a status: forward the request first, then answer the status instead of the server
    hits: int = field(default=0)

    def applies(self, method: str, path: str) -> bool:
        now = time.monotonic()
        return (self.match in path and (self.method is None or self.method == method)
                and (self.times is None or self.hits < self.times)
                and self.start <= now and (self.until is None or now < self.until))


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.rules: list[Rule] = []
        self.seen: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def fail(self, fault: int | str, match: str = "", method: str | None = None, times: int | None = None,
             seconds: float | None = None, delay: float = 0.0, after: float = 0.0, forward: bool = False) -> Rule:
        """`after` seconds from now, for `seconds` (None: for good) or `times` requests."""
        start = time.monotonic() + after
        rule = Rule(fault, match, method, times, None if seconds is None else start + seconds, delay, start, forward)
        with self.lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()

    def _rule(self, method: str, path: str) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.applies(method, path):
                    rule.hits += 1
                    return rule
        return None

    def __enter__(self) -> FaultProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True, name="fault-proxy").start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(proxy: FaultProxy):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            rule = proxy._rule(self.command, self.path)
            done = ("forwarded" if rule is None else f"{rule.fault} after forwarding" if rule.forward
                    else str(rule.fault))
            with proxy.lock:
                proxy.seen.append((self.command, self.path, done))
            if rule is not None and rule.fault == "reset":
                self._reset()
                return
            if rule is not None and isinstance(rule.fault, int) and not rule.forward:
                self._answer(rule.fault)
                return
            if rule is not None and rule.fault == "slow":
                time.sleep(rule.delay)
            upstream = http.client.HTTPConnection(*proxy.upstream, timeout=300)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
            finally:
                upstream.close()
            if rule is not None and rule.fault == "lost":
                self._reset()
                return
            if rule is not None and isinstance(rule.fault, int):  # forwarded: the server did it
                self._answer(rule.fault)
                return
            self.send_response(answer.status)
            for k, v in answer.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _answer(self, status: int) -> None:
            # plain text, as a gateway or an auth proxy answers: MLflow's client maps the status to its code
            text = f"fault proxy: injected HTTP {status}".encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def _reset(self) -> None:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.close_connection = True
            self.connection.close()  # RST: linger on, timeout 0

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

    return Handler
