"""systemd's notify/watchdog protocol (sd_notify(3)) for the scanner and gateway services.

A plain datagram to ``$NOTIFY_SOCKET``, no libsystemd binding: READY=1 once booted, WATCHDOG=1
from the main loop (so a loop that hangs is restarted by systemd), STOPPING=1 on the way out.
"""

import os
import socket
import time


class SystemdNotifier:
    """sd_notify without libsystemd. Does nothing when not started by systemd."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._address = env.get("NOTIFY_SOCKET")
        usec = env.get("WATCHDOG_USEC")
        self.watchdog_s = int(usec) / 1e6 if usec and usec.isdigit() else None
        self._last_ping = float("-inf")

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, message: str) -> bool:
        if not self._address:
            return False
        address = self._address
        if address.startswith("@"):  # abstract namespace socket
            address = "\0" + address[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(address)
                sock.sendall(message.encode())
        except OSError:
            return False
        return True

    def ready(self, status: str = "running") -> None:
        self.notify(f"READY=1\nSTATUS={status}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")

    def watchdog(self, now: float | None = None) -> None:
        """Ping at most every half watchdog period (the usual sd_watchdog_enabled advice)."""
        if self.watchdog_s is None:
            return
        now = time.monotonic() if now is None else now
        if now - self._last_ping >= self.watchdog_s / 2:
            self._last_ping = now
            self.notify("WATCHDOG=1")
