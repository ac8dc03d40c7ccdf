"""A file that is re-read when it changes on disk, keeping the last good value on failure.

Used for the site registry (a revoked device takes effect without a restart), the central
registry and the operators' users file. The file is checked on every `get()` with one
`stat()`; it is re-read when its (mtime_ns, size, inode) fingerprint changes, so an atomic
replace (new inode) is seen even inside one mtime tick. A file that fails to load (half
written, bad JSON, missing) keeps the previous value: a broken write must not lock out a site.
The failing fingerprint is remembered so the error is logged once, not on every call.
"""

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class FileStamp:
    """What changes when a file is rewritten or replaced."""

    mtime_ns: int
    size: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> "FileStamp":
        st = os.stat(path)
        return cls(st.st_mtime_ns, st.st_size, st.st_ino)


class ReloadingFile(Generic[T]):
    """`get()` returns `load(path)`, re-run when the file changes; thread-safe.

    `initial` is returned until a first load succeeds. `when_missing`, if given, is the value
    used while the file does not exist (e.g. "nobody may log in"); without it a missing file
    keeps the last good value like any other failure.
    """

    def __init__(
        self,
        path: str | Path,
        load: Callable[[Path], T],
        *,
        initial: T,
        name: str = "file",
        when_missing: Callable[[], T] | None = None,
    ) -> None:
        self.path = Path(path)
        self.name = name
        self._load = load
        self._when_missing = when_missing
        self._value: T = initial
        self._stamp: FileStamp | None = None  # of the last attempt, good or bad
        self._loaded = False
        self._missing_logged = False
        self._reload_requested = False
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """True once the file has been read successfully at least once."""
        return self._loaded

    def request_reload(self) -> None:
        """Signal-safe (e.g. from a SIGHUP handler): the next `get()` re-reads the file."""
        self._reload_requested = True

    def get(self) -> T:
        try:
            stamp = FileStamp.of(self.path)
        except OSError as exc:
            return self._missing(exc)
        with self._lock:
            if stamp != self._stamp or self._reload_requested:
                self._reload_requested = False
                self._read(stamp)
            return self._value

    def reload(self) -> bool:
        """Re-read now, whatever the fingerprint says; True when the new value was taken."""
        try:
            stamp = FileStamp.of(self.path)
        except OSError as exc:
            self._missing(exc)
            return False
        with self._lock:
            return self._read(stamp)

    def _read(self, stamp: FileStamp) -> bool:
        """Load under the lock. The stamp is taken before reading, so a write racing with
        the read is seen as a change on the next call."""
        self._stamp = stamp
        self._missing_logged = False
        try:
            value = self._load(self.path)
        except Exception as exc:  # any loader failure must keep the service running
            log.error(
                "%s %s not (re)loaded, keeping the previous value: %s: %s",
                self.name,
                self.path,
                type(exc).__name__,
                exc,
            )
            return False
        self._value, self._loaded = value, True
        log.info("%s %s loaded", self.name, self.path)
        return True

    def _missing(self, exc: OSError) -> T:
        with self._lock:
            if not self._missing_logged:
                self._missing_logged = True
                if self._when_missing is not None:
                    log.warning("%s %s is missing (%s)", self.name, self.path, exc.strerror)
                else:
                    log.error(
                        "%s %s is missing (%s), keeping the previous value",
                        self.name,
                        self.path,
                        exc.strerror,
                    )
            self._stamp = None  # a file that comes back is read again
            if self._when_missing is not None:
                self._value, self._loaded = self._when_missing(), False
            return self._value
