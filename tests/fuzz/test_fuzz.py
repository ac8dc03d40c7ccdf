"""Fuzzing in `make test` (short) and `make fuzz` (long: CHOT_FUZZ_SECONDS=600).

Mutates the seed corpus (bit flips, truncation, splices, inserted bytes) and random inputs through
every decoder: no exception but a reason, no hang (pytest-timeout), bounded memory (tracemalloc).
"""

import os
import random
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.harness import fuzz_one

CORPUS = Path(__file__).parent / "corpus"
SECONDS = float(os.environ.get("CHOT_FUZZ_SECONDS", "8"))
MEMORY_LIMIT = 4 * 1024 * 1024  # per input: inputs are <= 8 KiB, zlib output is capped at 8 KiB


def seeds() -> list[bytes]:
    return [p.read_bytes() for p in sorted(CORPUS.iterdir())]


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(5)
        if choice == 0 and buf:  # flip a bit
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif choice == 1 and buf:  # truncate
            del buf[rng.randrange(len(buf)) :]
        elif choice == 2:  # insert interesting bytes
            buf[rng.randrange(len(buf) + 1) : 0] = rng.choice(
                [b"\xff", b"\x00", b"\x9f", b"\xbf", b"\x5b\xff\xff\xff\xff", b"\xd2", b"\xc1"]
            )
        elif choice == 3:  # splice with another seed
            other = rng.choice(pool)
            buf = buf[: rng.randrange(len(buf) + 1)] + other[rng.randrange(len(other) + 1) :]
        elif buf:  # overwrite a byte
            buf[rng.randrange(len(buf))] = rng.randrange(256)
    return bytes(buf[:16384])


@pytest.mark.timeout(120)
def test_corpus_replays_cleanly():
    for data in seeds():
        fuzz_one(data)


@pytest.mark.timeout(SECONDS * 3 + 60)
def test_mutation_fuzz_within_time_and_memory():
    rng = random.Random(int(os.environ.get("CHOT_FUZZ_SEED", "2021")))
    pool = seeds()
    deadline = time.monotonic() + SECONDS
    runs = worst_peak = 0
    tracemalloc.start()
    try:
        while time.monotonic() < deadline:
            data = mutate(rng, rng.choice(pool), pool)
            tracemalloc.reset_peak()
            fuzz_one(data)
            worst_peak = max(worst_peak, tracemalloc.get_traced_memory()[1])
            runs += 1
    finally:
        tracemalloc.stop()
    assert runs > 100, runs
    assert worst_peak < MEMORY_LIMIT, worst_peak


@given(st.binary(max_size=2048))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_bytes(data):
    fuzz_one(data)
