"""A batch's messages sorted into what the commit takes: accepted events (verified in the
verifier process or here), refusals, statuses, heartbeats and peer gateways' acks.

Refused statuses, heartbeats and acks are one `Rejected` per device and reason per batch,
counted as many times as they came: a flood is not a flood of rows. Payloads are never logged.
"""

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace

from gateway.commit_guard import VerifiedBatch
from gateway.store import Accepted, Rejected
from gateway.verifier import Refusal, VerifierResult, verify_event
from protocol import ack as ack_contract
from protocol import status
from protocol.reasons import ProtocolError
from protocol.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inbound:
    """One message handed from paho's thread to the writer."""

    leaf: str  # event | status | heartbeat | ack
    dev: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # connection it arrived on: a PUBACK is only valid on that connection


@dataclass(frozen=True)
class BatchSorter:
    """The site's rules for sorting: whose events, whether peer acks count, which gateway
    we are (our own acks, echoed on a device's ack topic, are not a peer's)."""

    site: str
    peer_acks: bool
    own_gateway_id: str | None

    def sort(
        self,
        items: list[Inbound],
        registry: Registry,
        answers: list[VerifierResult] | None,
        counts: Counter[str],
    ) -> VerifiedBatch:
        """`answers`: the verifier process's, one per event in order; None: verify here."""
        out = VerifiedBatch(counts=counts)
        refused: dict[tuple[str, str], Rejected] = {}
        remote = iter(answers) if answers is not None else None
        for item in items:
            try:
                if item.leaf == "event":
                    out.accepted.append(self._accept(item, registry, remote))
                elif item.leaf == "status":
                    out.statuses.append((item.dev, status.parse_status(item.payload).state))
                elif item.leaf == "heartbeat":
                    beat = status.parse_heartbeat(item.payload)
                    out.heartbeats.append((item.dev, asdict(beat)))
                elif item.leaf == "ack" and self.peer_acks:
                    peer = self._peer_ack(item, registry)
                    if peer is not None:
                        out.peer_acks.append(peer)
            except ProtocolError as exc:
                out.rejected.append(Rejected(exc.reason.value, exc.detail, item.dev))
                log.info("reject device=%s reason=%s", item.dev, exc.reason.value)
            except Exception as exc:  # a payload off protocol/status.py's contract
                key = (item.dev, f"bad_{item.leaf}")
                if key in refused:
                    refused[key] = replace(refused[key], count=refused[key].count + 1)
                else:
                    detail = str(exc) if isinstance(exc, status.PayloadError) else repr(exc)
                    refused[key] = Rejected(key[1], detail[:200], item.dev)
                    log.info("reject device=%s reason=%s", item.dev, key[1])
        for rej in refused.values():
            out.rejected.append(rej)
        return out

    def _peer_ack(self, item: Inbound, registry: Registry) -> ack_contract.Ack | None:
        """A signed ack on a device's ack topic, by one of the site's gateways (registry) and
        for that device; None for our own. Raises AckError (counted as bad_ack)."""
        keys = {
            s.id: s.public_key
            for s in registry.for_site(self.site)
            if s.role == "gateway" and not s.revoked
        }
        ack = ack_contract.open_signed_ack(item.payload, keys)
        if ack.dev != item.dev:
            raise ack_contract.AckError("wrong_device", f"{ack.dev} on {item.dev}'s topic")
        return None if ack.gw == self.own_gateway_id else ack

    def _accept(
        self, item: Inbound, registry: Registry, remote: Iterator[VerifierResult] | None
    ) -> Accepted:
        """The event as the store keeps it, from the verifier process's answer or verified
        here (remote None); raises ProtocolError with the reason it is refused."""
        if remote is None:
            return verify_event(item.payload, item.dev, self.site, registry)
        answer = next(remote)
        if isinstance(answer, Refusal):
            raise ProtocolError(answer.reason, answer.detail)
        return answer.accepted(item.payload)
