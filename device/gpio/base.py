"""The output-backend contract that the indicator drives.

The indicator never talks to a GPIO library: it names logical outputs ("green", "red", "amber",
"buzzer") and a backend maps them to pins. That keeps patterns testable without hardware and
keeps the one GPIO import in ``rpigpio.py`` (the gpiozero layout).
"""

from __future__ import annotations

from typing import Protocol

#: Logical LED outputs, in the order a terminal rendering shows them.
LEDS: tuple[str, ...] = ("green", "red", "amber")
BUZZER = "buzzer"

#: BCM pin numbers of the reference wiring (docs/hardware); override per unit in config.
DEFAULT_PINS: dict[str, int] = {"green": 17, "red": 27, "amber": 22, "buzzer": 18}


class OutputBackend(Protocol):
    """On/off outputs plus one PWM tone output, addressed by logical name."""

    def setup(self, pins: dict[str, int]) -> None:
        """Claim the pins (name -> BCM number) as outputs, all off."""

    def write(self, name: str, on: bool) -> None:
        """Drive an on/off output."""

    def tone(self, name: str, hz: float | None) -> None:
        """Sound a PWM tone at ``hz`` on a (passive) buzzer output; ``None`` silences it."""

    def close(self) -> None:
        """Turn everything off and release the pins."""
