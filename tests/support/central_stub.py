"""A real, tiny central ingest server for gateway tests (not a mock: a real HTTP peer).

Implements the central ingest contract over SQLite: POST /api/v1/events with a bearer token and
X-Chot-Gateway, CBOR body {"gateway", "events": [signed bytes]}, answer JSON
{"stored", "duplicate", "rejected"}. Events are verified with protocol.events.open_event when a
key lookup is given. It can be switched "down" (503 answers) or stopped and restarted on the
same port (connection refused meanwhile), and it records every outcome so tests can check that
each event id was stored exactly once.
"""

import json
import sqlite3
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cbor2

from harness.mosquitto import free_port
from protocol import cose
from protocol.events import open_event, parse_event_payload
from protocol.reasons import ProtocolError

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (eid BLOB PRIMARY KEY, gateway TEXT, dev TEXT, typ TEXT,
                                   raw BLOB);
CREATE TABLE IF NOT EXISTS outcomes (eid BLOB, gateway TEXT, outcome TEXT);
"""


class CentralStub:
    def __init__(
        self,
        db_path: Path,
        tokens: dict[str, str],
        *,
        key_for: Callable[[str], bytes | None] | None = None,
        port: int | None = None,
    ) -> None:
        self.db_path = Path(db_path)
        self.tokens = tokens
        self.key_for = key_for
        self.port = port or free_port()
        self.down = False  # True: answer 503 to everything
        self.reject_devices: set[str] = set()  # events of these devices get rejected
        self.requests = 0
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        self._db.executescript(SCHEMA)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "CentralStub":
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                stub.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, answer = stub.handle(self.path, dict(self.headers), body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # --- the contract ----------------------------------------------------------------------

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
        if self.down:
            return 503, {"error": "down"}
        if path != "/api/v1/events":
            return 404, {"error": "not found"}
        gateway = headers.get("X-Chot-Gateway", "")
        auth = headers.get("Authorization", "")
        if (
            not gateway
            or self.tokens.get(gateway) is None
            or auth != f"Bearer {self.tokens[gateway]}"
        ):
            return 401, {"error": "bad token"}
        try:
            request = cbor2.loads(body)
            events = request["events"]
            assert request["gateway"] == gateway and len(events) <= 5000
        except Exception:
            return 400, {"error": "bad body"}
        answer: dict[str, list] = {"stored": [], "duplicate": [], "rejected": []}
        with self._lock:
            self._db.execute("BEGIN")
            for index, raw in enumerate(events):
                try:
                    if self.key_for is not None:
                        event = open_event(raw, self.key_for).event
                    else:
                        event = parse_event_payload(cose.parse_sign1(raw).payload)
                except ProtocolError as exc:
                    answer["rejected"].append(
                        {"index": index, "eid": None, "reason": exc.reason.value, "detail": ""}
                    )
                    continue
                eid = event.eid
                if event.dev in self.reject_devices:
                    outcome = "rejected"
                    answer["rejected"].append(
                        {
                            "index": index,
                            "eid": eid.hex(),
                            "reason": "device_revoked",
                            "detail": "test",
                        }
                    )
                else:
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO events VALUES (?,?,?,?,?)",
                        (eid, gateway, event.dev, event.typ, raw),
                    )
                    outcome = "stored" if cur.rowcount else "duplicate"
                    answer[outcome].append(eid.hex())
                self._db.execute("INSERT INTO outcomes VALUES (?,?,?)", (eid, gateway, outcome))
            self._db.execute("COMMIT")
        return 200, answer

    # --- what tests look at ----------------------------------------------------------------

    def stored_eids(self) -> set[bytes]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT eid FROM events")}

    def outcome_counts(self, outcome: str) -> dict[bytes, int]:
        with self._lock:
            return dict(
                self._db.execute(
                    "SELECT eid, COUNT(*) FROM outcomes WHERE outcome=? GROUP BY eid", (outcome,)
                ).fetchall()
            )

    def events(self) -> list[tuple[bytes, str, str, str]]:
        """(eid, gateway, dev, typ) of every stored event."""
        with self._lock:
            return self._db.execute("SELECT eid, gateway, dev, typ FROM events").fetchall()
