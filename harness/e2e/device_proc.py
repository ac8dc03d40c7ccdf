"""A scanner unit as a real process: `chot device run` with the keyboard-wedge source, fed pass
texts through a stdin pipe kept open, so the test knows which text became which sequence
number; its outbox database is the ground truth for what it decided and committed."""

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from chot.system import chot_argv
from harness.polling import wait_until

ROOT = Path(__file__).resolve().parents[2]


class DeviceProc:
    """`chot device run` with stdin kept open: a keyboard-wedge reader we type into."""

    def __init__(
        self,
        index: int,
        config: Path,
        workdir: Path,
        env: dict[str, str],
        device_id: str | None = None,
    ) -> None:
        self.index = index
        self.config = config
        self.id = device_id or f"demo-lane{index + 1}"
        self.env = env
        self.log_path = workdir / "logs" / f"{self.id}.log"
        self.clock_file: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.started_ms = 0  # Unix ms of the last start: its "online" must be newer
        self._feeder: threading.Thread | None = None
        self._stop_feed = threading.Event()
        self.fed = 0  # lines written to the pipe by the current feeder

    @property
    def outbox(self) -> Path:
        return self.config.parent / "state" / "outbox.db"

    def start(self) -> "DeviceProc":
        if self.clock_file is not None:
            argv = [
                sys.executable,
                "-m",
                "harness.e2e.clock_unit",
                "--config",
                str(self.config),
                "--clock-file",
                str(self.clock_file),
            ]
        else:
            argv = chot_argv("device", "run", "--config", str(self.config))
        self.started_ms = int(time.time() * 1000)
        with self.log_path.open("ab") as log_file:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self.env,
                cwd=ROOT,
            )
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def feed(self, texts: list[str], rate: float | None = None) -> threading.Thread:
        """Type `texts` into the unit from a thread, `rate` lines a second (None: as fast as
        the unit reads them: the pipe blocks when it is full)."""
        self._stop_feed.clear()
        self.fed = 0
        proc = self.proc
        assert proc is not None and proc.stdin is not None

        def run() -> None:
            start = time.monotonic()
            try:
                for i, text in enumerate(texts):
                    if self._stop_feed.is_set():
                        return
                    if rate:
                        delay = start + i / rate - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                    proc.stdin.write(text.encode() + b"\n")
                    if rate:
                        proc.stdin.flush()
                    self.fed = i + 1
                proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass  # the unit was killed: the test knows

        self._feeder = threading.Thread(target=run, name=f"feed-{self.id}", daemon=True)
        self._feeder.start()
        return self._feeder

    def join_feed(self, timeout: float) -> None:
        if self._feeder is not None:
            self._feeder.join(timeout)
            assert not self._feeder.is_alive(), f"{self.id}: feeding did not finish"

    def kill(self) -> None:
        """kill -9 the unit (a power cut): no clean shutdown, stdin pipe lost."""
        self._stop_feed.set()
        if self.running:
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self._close_stdin()

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait: the service's clean exit."""
        self._stop_feed.set()
        if self.proc is None:
            return None
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._close_stdin()
        return self.proc.returncode

    def _close_stdin(self) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                self.proc.stdin.close()


def outbox_state(path: Path, timeout: float = 10.0) -> dict[str, int]:
    """last_seq (committed decisions), acked_seq and depth, read from a unit's outbox.db.

    Zeros only while the unit has not created its outbox yet. A read that fails while the
    unit writes (its first open, a checkpoint) is retried, never taken for "nothing
    committed": a zero here would shift every count computed from it."""
    if not path.exists():
        return {"last_seq": 0, "acked_seq": 0, "depth": 0}
    errors: list[str] = []

    def read() -> dict[str, int] | None:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            depth, highest = db.execute("SELECT COUNT(*), MAX(seq) FROM events").fetchone()
        except sqlite3.OperationalError as exc:  # not created yet, or busy: read again
            errors.append(str(exc))
            return None
        finally:
            db.close()
        return {
            # meta's last_seq is written when acks settle; rows not yet acked are newer
            "last_seq": max(meta.get("last_seq", 0), highest or 0),
            "acked_seq": meta.get("acked_seq", 0),
            "depth": depth,
        }

    return wait_until(
        read, timeout, message=lambda: f"a readable outbox at {path} (errors: {errors[-3:]})"
    )
