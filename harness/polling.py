"""The one way tests and benchmarks wait for something to become true.

A fixed sleep followed by an assertion is either too slow or flaky on a shared machine;
`wait_until` polls the condition and, on timeout, fails with what was awaited and the last
value seen.
"""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A condition stayed false: an AssertionError so pytest reports it as a test failure."""


def wait_until(
    condition: Callable[[], T],
    timeout: float = 20.0,
    interval: float = 0.05,
    message: str | Callable[[], str] | None = None,
) -> T:
    """Poll `condition` every `interval` s until it returns something truthy and return that;
    after `timeout` s raise `WaitTimeout` naming `message` (a callable is asked then, so it
    can describe the state at the time) and the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message() if callable(message) else message
            what = what or getattr(condition, "__qualname__", repr(condition))
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what} (last: {value!r})")
        time.sleep(interval)
