"""The broker for tests lives in `harness.mosquitto` (the benchmarks use it too); this name is
kept for the test modules that still import it from here."""

from harness.mosquitto import Broker, TlsFiles, free_port

__all__ = ["Broker", "TlsFiles", "free_port"]
