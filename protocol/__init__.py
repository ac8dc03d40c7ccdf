"""chot's shared contracts: the citizen pass, trust and revocation lists, scan events, topics.

Everything here is pure (no I/O, no clock reads): callers pass bytes, keys and a `Clock` in and
get values or stable reason codes out. See `protocol/README.md` for the wire formats.
"""

PROTOCOL_VERSION = 1
