"""The site registry ingest verifies events against, re-read when its file changes."""

import logging
from pathlib import Path

from common.reload import ReloadingFile
from protocol.registry import Registry

log = logging.getLogger(__name__)


class RegistrySource:
    """The site registry, re-read when its file changes (checked by the writer thread every
    `registry_check_s`) or on request (SIGHUP).

    A broken file keeps the last good registry: a half-written file must not reject a site.
    """

    def __init__(self, path: Path, site: str) -> None:
        self.site = site
        self.registry = Registry()  # until the file is read: refuses every event
        self._file = ReloadingFile(
            path,
            lambda p: Registry.load(p).for_site(site),
            initial=self.registry,
            name=f"registry of site {site}",
        )
        self.maybe_reload()

    @property
    def path(self) -> Path:
        return self._file.path

    def switch_to(self, path: Path) -> None:
        """Read `path` from now on (a newer signed registry than the bundle's file)."""
        if self._file.path != path:
            self._file.path = path
        self.request_reload()

    def request_reload(self) -> None:
        """Signal-safe: the writer thread re-reads the file at its next check."""
        self._file.request_reload()

    def maybe_reload(self) -> None:
        registry = self._file.get()
        if registry is not self.registry:
            log.info("registry: %d signers for site %s", len(registry.signers), self.site)
        self.registry = registry
