"""The shared test vectors live in `harness.vectors` (the benchmarks read them too); this name
is kept for the test modules that still import it from here."""

from harness.vectors import load_vector, vector_path

__all__ = ["load_vector", "vector_path"]
