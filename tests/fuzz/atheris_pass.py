"""Coverage-guided fuzzing with atheris over the same target as the hypothesis tests.

.venv/bin/python tests/fuzz/atheris_pass.py -max_total_time=600 tests/fuzz/corpus
"""

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports():
    from tests.fuzz.harness import fuzz_one


def main() -> None:
    atheris.Setup(sys.argv, fuzz_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
