"""The shared test vectors: from `../shared/vectors` beside the repository (the source of
truth), else the copy kept in `tests/protocol/vectors` for a clone that has no shared/ beside it."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "vectors"
COPY = ROOT / "tests" / "protocol" / "vectors"


def vector_path(name: str) -> Path:
    path = SHARED / name
    return path if path.exists() else COPY / name


def load_vector(name: str) -> dict:
    return json.loads(vector_path(name).read_text())
