"""A local fake of the Slack Web API, the way bolt-python tests itself.

A threaded HTTP server answering the methods rollbot calls, checking tokens and
required arguments (and Block Kit limits) as Slack does, recording every call,
and able to inject failures (429 with Retry-After, 5xx) to test polite retries.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

BOT_TOKEN = "xoxb-test-bot-token"
APP_TOKEN = "xapp-test-app-token"
TEAM = "T0TEST"
BOT_USER = "U0ROLLBOT"
CHANNELS = {"#incidents": "C0INCIDENTS", "#devops-team": "C0DEVOPS"}

REQUIRED: dict[str, tuple[str, ...]] = {
    "chat.postMessage": ("channel",),
    "chat.update": ("channel", "ts"),
    "chat.postEphemeral": ("channel", "user"),
    "views.open": ("trigger_id", "view"),
    "views.publish": ("user_id", "view"),
    "usergroups.users.list": ("usergroup",),
    "users.info": ("user",),
    "chat.getPermalink": ("channel", "message_ts"),
    "files.getUploadURLExternal": ("filename", "length"),
    "files.completeUploadExternal": ("files",),
}
JSON_FIELDS = ("blocks", "view", "attachments", "files")


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    token: str | None
    at: float = field(default_factory=time.monotonic)


ELEMENTS = {"button", "checkboxes", "static_select", "datetimepicker"}


def _element_problems(e: dict[str, Any]) -> list[str]:
    """Block Kit's rules for the interactive elements rollbot renders (api.slack.com/reference/
    block-kit/block-elements): option counts and lengths, initial values among the options."""
    kind = e.get("type")
    if kind not in ELEMENTS:
        return [f"unknown element type {kind!r}"]
    if kind == "static_select":
        options = e.get("options", [])
        problems = [] if 1 <= len(options) <= 100 else ["static_select needs 1..100 options"]
        for o in options:
            if o.get("text", {}).get("type") != "plain_text" or len(o["text"]["text"]) > 75:
                problems.append("select option text must be plain_text of at most 75 characters")
            if not 1 <= len(o.get("value", "")) <= 150:
                problems.append("select option value must have 1..150 characters")
        if "initial_option" in e and e["initial_option"] not in options:
            problems.append("initial_option is not one of the options")
        return problems
    if kind == "datetimepicker" and not isinstance(e.get("initial_date_time", 0), int):
        return ["datetimepicker initial_date_time must be a UNIX timestamp"]
    return []


def _block_problems(blocks: Any) -> list[str]:
    if not isinstance(blocks, list):
        return ["blocks is not an array"]
    problems = []
    if len(blocks) > 50:
        problems.append("more than 50 blocks")
    action_ids: list[str] = []
    for b in blocks:
        kind = b.get("type")
        if kind not in {"section", "actions", "context", "divider", "header", "input"}:
            problems.append(f"unknown block type {kind!r}")
        if kind == "section" and len(b.get("text", {}).get("text", "")) > 3000:
            problems.append("section text over 3000 characters")
        if kind == "actions":
            elements = b.get("elements", [])
            if not elements or len(elements) > 25:
                problems.append("actions block needs 1..25 elements")
            for e in elements:
                action_ids.append(e.get("action_id", ""))
                if len(e.get("value", "")) > 2000:
                    problems.append("value over 2000 characters")
                if e.get("type") == "checkboxes" and not 1 <= len(e.get("options", [])) <= 10:
                    problems.append("checkboxes need 1..10 options")
                if e.get("type") == "button" and len(e.get("text", {}).get("text", "")) > 75:
                    problems.append("button text over 75 characters")
                problems += _element_problems(e)
    if len(action_ids) != len(set(action_ids)):
        problems.append("duplicate action_id in one message")
    return problems


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.groups: dict[str, list[str]] = {}
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        # method -> [(status, headers, body, only to this channel or None)]
        self.faults: dict[str, list[tuple[int, dict[str, str], dict[str, Any], str | None]]] = {}
        self.held: dict[str, threading.Event] = {}
        self.ws_url: str | None = None
        self.pending_uploads: dict[str, dict[str, Any]] = {}
        self.files: list[dict[str, Any]] = []  # completed uploads: content, channel, thread
        self._ts = itertools.count(1)
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:
                fake._handle(self)

            do_GET = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/"

    def start(self) -> FakeSlack:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------ test helpers
    def fail_next(
        self,
        method: str,
        status: int,
        headers: dict[str, str] | None = None,
        channel: str | None = None,
    ) -> None:
        """The next call of ``method`` (to ``channel``, when given) fails with ``status``."""
        body = {"ok": False, "error": "ratelimited" if status == 429 else "internal_error"}
        with self._lock:
            self.faults.setdefault(method, []).append((status, headers or {}, body, channel))

    def _take_fault(
        self, method: str, channel: Any
    ) -> tuple[int, dict[str, str], dict[str, Any]] | None:
        faults = self.faults.get(method, [])
        for i, (status, headers, body, only) in enumerate(faults):
            if only is None or channel in (only, CHANNELS.get(only)):  # by name or id
                del faults[i]
                return status, headers, body
        return None

    def hold(self, method: str) -> threading.Event:
        """Keep answers to ``method`` waiting until the returned event is set (a slow Slack)."""
        gate = threading.Event()
        with self._lock:
            self.held[method] = gate
        return gate

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def wait_for(
        self, predicate: Callable[[FakeSlack], Any], timeout: float = 20.0, what: str = ""
    ) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate(self)
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0:
                    methods = [c.method for c in self.calls][-30:]
                    raise AssertionError(
                        f"timed out waiting for {what or predicate}; calls: {methods}"
                    )
                self._cond.wait(min(left, 0.2))

    def find(self, method: str, pred: Callable[[dict[str, Any]], bool]) -> list[Call]:
        return [c for c in self.calls if c.method == method and pred(c.args)]

    # ------------------------------------------------------------ the API
    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        if req.path.startswith("/upload/"):  # step 2 of files_upload_v2: the bytes themselves
            self._receive_upload(req, req.rfile.read(length) if length else b"")
            return
        raw = req.rfile.read(length).decode() if length else ""
        path = req.path.split("?", 1)[0]
        method = path.removeprefix("/api/")
        if req.headers.get("Content-Type", "").startswith("application/json"):
            args = json.loads(raw or "{}")
        else:
            args = {k: v[0] for k, v in parse_qs(raw).items()}
            if "?" in req.path:
                args.update({k: v[0] for k, v in parse_qs(req.path.split("?", 1)[1]).items()})
        for name in JSON_FIELDS:
            if isinstance(args.get(name), str):
                with contextlib.suppress(ValueError):
                    args[name] = json.loads(args[name])
        auth = req.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else args.get("token")
        with self._cond:
            self.calls.append(Call(method, args, token))
            self._cond.notify_all()
            fault = self._take_fault(method, args.get("channel"))
            gate = self.held.get(method)
        if gate is not None:
            gate.wait(60)
        if fault:
            status, headers, body = fault
        else:
            status, headers = 200, {}
            with self._cond:
                body = self._answer(method, args, token)
        data = json.dumps(body).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/json; charset=utf-8")
        req.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            req.send_header(k, v)
        req.end_headers()
        req.wfile.write(data)
        with self._cond:
            self._cond.notify_all()

    def _receive_upload(self, req: BaseHTTPRequestHandler, data: bytes) -> None:
        """Slack's upload URL: the declared length must match; answers "OK - <bytes>"."""
        file_id = req.path.removeprefix("/upload/")
        with self._cond:
            pending = self.pending_uploads.get(file_id)
            ok = pending is not None and pending["length"] == len(data)
            if ok:
                pending["content"] = data
        body = (f"OK - {len(data)}" if ok else "upload refused").encode()
        req.send_response(200 if ok else 400)
        req.send_header("Content-Type", "text/plain")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def _upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            length = int(args["length"])
        except ValueError:
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{next(self._ts):08d}"
        self.pending_uploads[file_id] = {"filename": args["filename"], "length": length}
        upload_url = self.url.removesuffix("/api/") + f"/upload/{file_id}"
        return {"ok": True, "upload_url": upload_url, "file_id": file_id}

    def _complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        files = args["files"]
        if not isinstance(files, list) or not files:
            return {"ok": False, "error": "invalid_arguments"}
        channel = args.get("channel_id")
        if channel and channel not in CHANNELS.values():
            return {"ok": False, "error": "channel_not_found"}
        done = []
        for f in files:
            pending = self.pending_uploads.get(f.get("id", ""))
            if pending is None or "content" not in pending:
                return {"ok": False, "error": "file_not_found"}
            self.files.append(
                {
                    **pending,
                    "id": f["id"],
                    "title": f.get("title"),
                    "channel": channel,
                    "thread_ts": args.get("thread_ts"),
                }
            )
            done.append({"id": f["id"], "title": f.get("title")})
        return {"ok": True, "files": done}

    def _answer(self, method: str, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        if method == "apps.connections.open":
            if token != APP_TOKEN:
                return {"ok": False, "error": "invalid_auth"}
            return (
                {"ok": True, "url": self.ws_url} if self.ws_url else {"ok": False, "error": "no ws"}
            )
        if token != BOT_TOKEN:
            return {"ok": False, "error": "not_authed" if not token else "invalid_auth"}
        missing = [a for a in REQUIRED.get(method, ()) if not args.get(a)]
        if missing:
            return {"ok": False, "error": f"missing_argument:{missing[0]}"}
        if method == "auth.test":
            return {
                "ok": True,
                "team_id": TEAM,
                "user_id": BOT_USER,
                "bot_id": "B0ROLLBOT",
                "user": "rollbot",
            }
        if method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
            if not (args.get("text") or args.get("blocks")):
                return {"ok": False, "error": "no_text"}
            if "blocks" in args:
                problems = _block_problems(args["blocks"])
                if problems:
                    return {"ok": False, "error": "invalid_blocks", "errors": problems}
            channel = CHANNELS.get(args["channel"], args["channel"])
            if method == "chat.update":
                key = (channel, args["ts"])
                if key not in self.messages:
                    return {"ok": False, "error": "message_not_found"}
                self.messages[key].update(text=args.get("text"), blocks=args.get("blocks"))
                return {"ok": True, "channel": channel, "ts": args["ts"]}
            ts = f"{int(time.time())}.{next(self._ts):06d}"
            if method == "chat.postEphemeral":
                return {"ok": True, "message_ts": ts}
            self.messages[(channel, ts)] = {
                "text": args.get("text"),
                "blocks": args.get("blocks"),
                "thread_ts": args.get("thread_ts"),
            }
            return {"ok": True, "channel": channel, "ts": ts, "message": {"ts": ts}}
        if method == "views.publish":  # a Home tab: type "home", at most 100 blocks
            view = args["view"]
            view = json.loads(view) if isinstance(view, str) else view
            blocks = view.get("blocks") if isinstance(view, dict) else None
            if view.get("type") != "home" or not isinstance(blocks, list) or len(blocks) > 100:
                return {"ok": False, "error": "invalid_arguments"}
            return {"ok": True, "view": {"id": "V0HOME", **view}}
        if method == "views.open":
            view = args["view"]
            if not isinstance(view, dict) or view.get("type") != "modal" or not view.get("title"):
                return {"ok": False, "error": "invalid_arguments"}
            return {"ok": True, "view": {"id": "V0001", **view}}
        if method == "files.getUploadURLExternal":
            return self._upload_url(args)
        if method == "files.completeUploadExternal":
            return self._complete_upload(args)
        if method == "conversations.list":
            named = [{"id": cid, "name": name.removeprefix("#")} for name, cid in CHANNELS.items()]
            return {"ok": True, "channels": [*named, {"id": "C0RANDOM", "name": "random"}]}
        if method == "usergroups.users.list":
            if args["usergroup"] not in self.groups:
                return {"ok": False, "error": "no_such_subteam"}
            return {"ok": True, "users": self.groups[args["usergroup"]]}
        if method == "users.info":
            return {"ok": True, "user": {"id": args["user"], "name": args["user"].lower()}}
        if method == "chat.getPermalink":
            return {
                "ok": True,
                "permalink": f"https://example.slack.com/archives/{args['channel']}/p1",
            }
        return {"ok": False, "error": "unknown_method"}
