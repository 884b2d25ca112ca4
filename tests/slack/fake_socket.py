"""A local Socket Mode server: the WebSocket end Slack would run.

``apps.connections.open`` on the fake Web API returns this server's ws:// URL.
Tests push envelopes (slash command, interactive, events) and wait for the
app's ack of each, measuring the ack latency.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from websockets.sync.server import ServerConnection, serve


class FakeSocketMode:
    def __init__(self) -> None:
        self._conns: list[ServerConnection] = []
        self._acks: dict[str, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self.server = serve(self._handler, "127.0.0.1", 0)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.socket.getsockname()[:2]
        return f"ws://{host}:{port}/link"

    def start(self) -> FakeSocketMode:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()

    def _handler(self, conn: ServerConnection) -> None:
        conn.send(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": 1,
                    "debug_info": {"host": "fake", "approximate_connection_time": 3600},
                    "connection_info": {"app_id": "A0ROLLBOT"},
                }
            )
        )
        with self._cond:
            self._conns.append(conn)
            self._cond.notify_all()
        try:
            for raw in conn:
                msg = json.loads(raw)
                if "envelope_id" in msg:
                    with self._cond:
                        self._acks[msg["envelope_id"]] = msg
                        self._cond.notify_all()
        except Exception:
            pass
        finally:
            with self._cond:
                if conn in self._conns:
                    self._conns.remove(conn)

    def wait_connected(self, timeout: float = 30.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._conns, timeout):
                raise AssertionError("the app never connected in Socket Mode")

    def send(
        self, kind: str, payload: dict[str, Any], retry_attempt: int = 0, timeout: float = 10.0
    ) -> tuple[dict[str, Any], float]:
        """Send one envelope; return the app's ack and how long it took."""
        envelope_id = str(uuid.uuid4())
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
        }
        if kind == "events_api":
            envelope["retry_attempt"] = retry_attempt
            envelope["retry_reason"] = "timeout" if retry_attempt else ""
        start = time.perf_counter()
        deadline = time.monotonic() + timeout
        while True:
            self.wait_connected()
            with self._cond:
                conn = self._conns[-1]
            try:
                conn.send(json.dumps(envelope))
            except Exception:  # closed under us: drop it and use the next connection
                with self._cond:
                    if conn in self._conns:
                        self._conns.remove(conn)
                continue
            with self._cond:
                # Like Slack: an envelope sent on a connection that closes before its
                # ack (the client refreshed its connection) is sent again on the new one.
                self._cond.wait_for(
                    lambda c=conn: (
                        envelope_id in self._acks
                        or c not in self._conns
                        or time.monotonic() > deadline
                    ),
                    max(deadline - time.monotonic(), 0),
                )
                if envelope_id in self._acks:
                    ack = self._acks.pop(envelope_id)
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"no ack for {kind} envelope")
        return ack, time.perf_counter() - start
