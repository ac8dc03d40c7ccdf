"""Stable reason codes and verdicts: the vocabulary shared by scanner, gateway and central.

Codes are lower-case strings on the wire and in logs; never rename one, only add.
"""

from enum import StrEnum


class Verdict(StrEnum):
    PASS = "pass"  # green: let the person through
    FAIL = "fail"  # red: refuse
    WARN = "warn"  # amber: the device cannot decide safely, staff check by hand


class Reason(StrEnum):
    OK = "ok"
    # decoding chain, in the order the steps run
    NOT_CHOT = "not_chot"
    BAD_BASE45 = "bad_base45"
    BAD_ZLIB = "bad_zlib"
    TOO_LARGE = "too_large"
    BAD_CBOR = "bad_cbor"
    BAD_COSE = "bad_cose"
    BAD_ALG = "bad_alg"
    UNKNOWN_KID = "unknown_kid"
    BAD_SIGNATURE = "bad_signature"
    BAD_CLAIMS = "bad_claims"
    ISSUER_MISMATCH = "issuer_mismatch"
    KIND_NOT_ALLOWED = "kind_not_allowed"
    # time and lists
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    VALIDITY_TOO_LONG = "validity_too_long"  # exp - start beyond the issuer's limit for the kind
    REVOKED = "revoked"
    TRUST_STALE = "trust_stale"
    NO_TRUST_LIST = "no_trust_list"
    CLOCK_UNTRUSTED = "clock_untrusted"
    # device-level decisions
    DUPLICATE_RECENT = "duplicate_recent"
    # signed documents (trust list, revocation list, events)
    ROLLBACK = "rollback"
    WRONG_TYPE = "wrong_type"
    # scan events at the gateway and the central store
    BAD_EVENT = "bad_event"
    UNKNOWN_DEVICE = "unknown_device"
    DEVICE_REVOKED = "device_revoked"
    TOPIC_MISMATCH = "topic_mismatch"
    OUT_OF_RANGE = "out_of_range"  # an event value outside the bounds of protocol/events.py
    STORE_REFUSED = "store_refused"  # central: the database refused this one event
    # EU Digital COVID Certificates (protocol/dcc.py): the signer and the site's DCC rules
    DSC_NOT_IN_FORCE = "dsc_not_in_force"  # signing certificate outside its validity now
    DSC_KIND_NOT_ALLOWED = "dsc_kind_not_allowed"  # the DSC's key usage excludes this type
    WRONG_DISEASE = "wrong_disease"  # not a COVID-19 certificate (tg)
    VACCINATION_INCOMPLETE = "vaccination_incomplete"  # dn < sd
    VACCINATION_TOO_RECENT = "vaccination_too_recent"  # last dose inside the waiting days
    TEST_POSITIVE = "test_positive"  # result is not "not detected"
    TEST_TOO_OLD = "test_too_old"  # sample taken longer ago than the site allows
    RECOVERY_NOT_VALID = "recovery_not_valid"  # today outside df..du


# Reasons that mean "cannot decide safely here": amber, staff check the card by hand.
WARN_REASONS = frozenset({Reason.CLOCK_UNTRUSTED, Reason.TRUST_STALE, Reason.NO_TRUST_LIST})


def verdict_for(reason: Reason) -> Verdict:
    """The light a reason turns on."""
    if reason is Reason.OK:
        return Verdict.PASS
    if reason in WARN_REASONS:
        return Verdict.WARN
    return Verdict.FAIL


class ProtocolError(Exception):
    """A decoding or verification step failed; `reason` is the stable code."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail
