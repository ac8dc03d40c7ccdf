"""One fuzz target for every decoder that takes bytes from outside: passes, events, documents.

The contract under test: any input gives a verdict or a ProtocolError with a reason, never
another exception, never a hang, never unbounded memory. Shared by the hypothesis tests (run in
`make test`), the long run (`make fuzz`) and the atheris harness.
"""

import zlib

from nacl.signing import SigningKey

from protocol.base45 import b45encode
from protocol.clock import Clock, ClockState
from protocol.documents import open_document
from protocol.events import open_event
from protocol.pass_v1 import PREFIX, verify_pass
from protocol.reasons import ProtocolError, Reason
from protocol.trust import IssuerKey, TrustList, root_keyring

# Fixed keys (the RFC 8032 test-1 key is public): the corpus pass verifies against this trust.
VECTOR_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
ISSUER = SigningKey(VECTOR_SEED)
ISSUER_ENTRY = IssuerKey("VN-HN", bytes(ISSUER.verify_key))
TRUST = TrustList(1, 0, 2**40, {ISSUER_ENTRY.kid: ISSUER_ENTRY})
ROOTS = root_keyring([bytes(ISSUER.verify_key)])
DEVICE_KEYS = {"hn01-lane1": bytes(ISSUER.verify_key)}
CLOCKS = (Clock.synced(1630458000), Clock(1630458000, ClockState.BOUNDED, 1630400000))


def texts_from(data: bytes) -> list[str]:
    """The ways raw fuzz bytes can reach the pass decoder."""
    return [
        data.decode("latin-1"),
        PREFIX + data.decode("latin-1"),
        PREFIX + b45encode(data),
        PREFIX + b45encode(zlib.compress(data)),
    ]


def fuzz_one(data: bytes) -> None:
    for text in texts_from(data):
        for clock in CLOCKS:
            result = verify_pass(text, TRUST, clock)
            assert isinstance(result.reason, Reason)
    for target in (
        lambda: open_event(data, DEVICE_KEYS.get),
        lambda: open_document(data, "chot-trust", ROOTS),
    ):
        try:
            target()
        except ProtocolError as exc:
            assert isinstance(exc.reason, Reason)
