"""Is this machine's clock synchronised? Read without forking and without CAP_SYS_TIME.

The gateway signs its time and this answer into every ack (protocol/ack.py), and its units
trust that time only when the answer is yes. In order:

1. ``CHOT_CLOCK_STATE`` (``synced`` is yes, anything else no): tests and the demo.
2. ``/run/systemd/timesync/synchronized`` exists: systemd-timesyncd creates it on its first
   successful synchronisation (and the file is gone after a reboot until it syncs again).
3. ``adjtimex`` read-only (``modes=0`` needs no privilege): the kernel's ``STA_UNSYNC`` flag,
   which chrony and ntpd clear while they discipline the clock.

Anything unreadable is "not synchronised": a gateway that cannot prove its time gives none.

This is the one adjtimex reader: the unit's clock probe (device/clock_source.py) uses
`read_adjtimex` too. libc is loaded once, by name ("libc.so.6"): ``ctypes.util.find_library``
runs ``ldconfig`` in a subprocess, which a unit must never do while it decides.
"""

import ctypes
import errno
import os
import time
from pathlib import Path

TIMESYNCD_MARKER = Path("/run/systemd/timesync/synchronized")
STA_UNSYNC = 0x0040
TIME_ERROR = 5
CACHE_S = 10.0


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """struct timex from <sys/timex.h> (c_long keeps 64-bit and 32-bit layouts right)."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    ]


def _load_libc() -> ctypes.CDLL | None:
    """glibc by its soname (no search, no subprocess), else the symbols already mapped."""
    for name in ("libc.so.6", None):
        try:
            return ctypes.CDLL(name, use_errno=True)
        except OSError:
            continue
    return None


LIBC = _load_libc()


def read_adjtimex(libc: object = None) -> bool:
    """Read-only adjtimex (modes=0): is the kernel clock disciplined (no ``STA_UNSYNC``, not
    ``TIME_ERROR``)? Raises PermissionError when the call is refused (``ProtectClock=``,
    seccomp) and OSError when it is missing or fails otherwise."""
    libc = libc if libc is not None else LIBC
    adjtimex = getattr(libc, "adjtimex", None)
    if adjtimex is None:
        raise OSError(errno.ENOSYS, "adjtimex is not available")
    timex = _Timex()
    ret = adjtimex(ctypes.byref(timex))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))  # EPERM/EACCES come out as PermissionError
    return ret != TIME_ERROR and not timex.status & STA_UNSYNC


def _adjtimex_synced() -> bool:
    try:
        return read_adjtimex()
    except OSError:
        return False


def clock_synchronized() -> bool:
    """The answer now (a stat and at most one system call)."""
    override = os.environ.get("CHOT_CLOCK_STATE")
    if override:
        return override == "synced"
    if TIMESYNCD_MARKER.exists():
        return True
    return _adjtimex_synced()


class SyncState:
    """`clock_synchronized`, asked at most every CACHE_S (it changes slowly)."""

    def __init__(self, probe=clock_synchronized, monotonic=time.monotonic) -> None:
        self._probe = probe
        self._monotonic = monotonic
        self._value = False
        self._at = float("-inf")

    def synced(self) -> bool:
        now = self._monotonic()
        if now - self._at >= CACHE_S:
            self._value, self._at = bool(self._probe()), now
        return self._value
