"""What the broker granted a unit: the SUBACK bookkeeping behind its MQTT subscriptions.

Every filter's SUBACK reason code is checked, as the gateway does: a filter the broker's ACL
refuses is remembered (and logged once by the uplink) and asked for again every
``resubscribe_s``, since an operator may fix the ACL without restarting the unit. A filter
refused before and granted now is reported so the uplink can act on it (the ack topic granted
means acks can come: publish what is unacknowledged).

Not locked here: the uplink's lock guards it, and is held across ``client.subscribe`` so a
SUBACK cannot be handled before its request is recorded.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Refusal:
    topic_filter: str
    reason_code: object  # paho's ReasonCode, logged as is


@dataclass(frozen=True)
class SubackOutcome:
    """What one SUBACK changed: filters refused for the first time, filters granted again."""

    refused: list[Refusal] = field(default_factory=list)
    granted: list[str] = field(default_factory=list)


class Subscriptions:
    """Subscribe requests in flight (paho mid -> filters) and the filters currently refused."""

    def __init__(self, resubscribe_s: float) -> None:
        self.resubscribe_s = resubscribe_s
        self._requests: dict[int, list[str]] = {}  # paho mid -> filters asked for
        self._refused: set[str] = set()  # filters the broker's last SUBACK refused
        self._resubscribe_at = float("inf")

    @property
    def refused(self) -> frozenset[str]:
        return frozenset(self._refused)

    def is_refused(self, topic_filter: str) -> bool:
        return topic_filter in self._refused

    def new_connection(self) -> None:
        """SUBACKs of the last connection never come."""
        self._requests.clear()

    def asked(self, mid: int, filters: list[str]) -> None:
        self._requests[mid] = filters

    def answered(self, mid: int, reason_codes: list, now: float) -> SubackOutcome | None:
        """The broker's SUBACK for request ``mid``; None when it answers no known request."""
        filters = self._requests.pop(mid, None)
        if filters is None:
            return None
        outcome = SubackOutcome()
        for topic_filter, rc in zip(filters, reason_codes, strict=False):
            if rc.is_failure:
                if topic_filter not in self._refused:  # still refused on retry: said once
                    self._refused.add(topic_filter)
                    outcome.refused.append(Refusal(topic_filter, rc))
            elif topic_filter in self._refused:
                self._refused.discard(topic_filter)
                outcome.granted.append(topic_filter)
        self._resubscribe_at = now + self.resubscribe_s if self._refused else float("inf")
        return outcome

    def due(self, now: float) -> list[str]:
        """Refused filters to ask for again now (empty until ``resubscribe_s`` has passed)."""
        if now < self._resubscribe_at:
            return []
        self._resubscribe_at = float("inf")  # until the SUBACK of this request
        return sorted(self._refused)
