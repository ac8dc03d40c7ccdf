"""The status page's words: alerts with what to do, banners, feed rows, and the same table
for status.js, all in the reader's language. The JSON API keeps English codes; only what a
person reads is translated here.
"""

from typing import Any

from common.i18n import N_, Translator
from common.reason_texts import REASON_TEXTS, VERDICT_TEXTS, reason_text, verdict_text

# alert code -> (what is wrong, what to do); device alerts first, then the gateway's
ALERT_TEXTS: dict[str, tuple[str, str]] = {
    "offline": (N_("offline"), N_("check its power and network cable")),
    "heartbeat_stale": (N_("no heartbeat"), N_("check its network")),
    "sequence_gap": (N_("events missing"), N_("keep it on the network until it catches up")),
    "outbox_backlog": (N_("events not delivered"), N_("check its network to the gateway")),
    "outbox_growing": (N_("outbox growing"), N_("check its network to the gateway")),
    "clock_bounded": (
        N_("clock not trusted"),
        N_("passes show amber: check by hand; call the technician to set the time"),
    ),
    "clock_unknown": (
        N_("clock not trusted"),
        N_("passes show amber: check by hand; call the technician to set the time"),
    ),
    "trust_outdated": (N_("old trust list"), N_("wait a minute; if it stays, restart it")),
    "no_trust_list": (N_("no trust list"), N_("check passes by hand; call the technician")),
    "disk_low": (N_("disk almost full"), N_("call the technician to free space")),
    "store_near_full": (N_("store almost full"), N_("check the link to the centre")),
    "store_full": (N_("store full"), N_("call the technician now")),
    "central_rejected_events": (
        N_("the centre refused some events"),
        N_("tell the technician"),
    ),
    "central_unreachable": (
        N_("centre unreachable"),
        N_("scans are kept here and sent later; check the internet link"),
    ),
    "mqtt_disconnected": (N_("broker connection lost"), N_("call the technician")),
    "trust_list_expired": (
        N_("trust list expired"),
        N_(
            "every pass shows amber: check by hand, and update the list: run "
            "`chot provision trust sign` at the ops desk and copy trust.cose to the gateway"
        ),
    ),
    "revocation_list_expired": (
        N_("revocation list expired"),
        N_(
            "every pass shows amber: check by hand, and update the list: run "
            "`chot provision revocations sign` at the ops desk and copy revocations.cose to "
            "the gateway"
        ),
    ),
    "sequence_gaps": (N_("events missing from scanners"), N_("see the scanners table")),
    "events_quarantined": (N_("events held for checking"), N_("tell the technician")),
    "gateway_clock_unsynced": (
        N_("gateway clock not synchronised"),
        N_("scans will show amber; check the gateway's NTP/GPS"),
    ),
    # a unit cut off from the gateway let through a pass another lane had already let
    # through (gateway/recent_passes.py): seen afterwards, listed under pass_repeats
    "pass_repeated": (
        N_("one pass let through at two lanes"),
        N_("check this person again"),
    ),
}
# a scanner's clock column: what its heartbeat's clock state means (protocol/clock.py)
CLOCK_TEXT = {
    "synced": N_("on time"),
    "bounded": N_("not synced (approximate)"),
    "unknown": N_("unknown: not trusted"),
}
STALE_REASONS = ("trust_stale", "no_trust_list")
UPDATE_TRUST_ACTION = N_(
    "every pass shows amber: check by hand, and update the list: run "
    "`chot provision trust sign` at the ops desk and copy trust.cose to the gateway"
)
PAGE_WORDS = {  # the labels status.js writes
    "passed": N_("passed"),
    "failed": N_("refused"),
    "warned": N_("by hand"),
    "manual": N_("manual"),
    "admitted": N_("admitted"),
    "turned_away": N_("turned away"),
    "online": N_("online"),
    "offline": N_("offline"),
    "unknown": N_("unknown"),
    "of_online": N_("{online} of {total} online"),
    "per_min": N_("{rate}/min"),
    "capacity": N_("{rate}/min of {capacity}/min · queue ≈ {queue}"),
    "no_scans": N_("No scans yet today."),
    "no_scanner": N_("No scanner has reported yet."),
    "live": N_("live"),
    "reconnecting": N_("reconnecting…"),
    "manual_entry": N_("manual entry"),
    "congestion": N_(
        "Lane {lane} over capacity: {rate}/min for {capacity}/min, about {queue} waiting. "
        "Open another lane or send people to the next checkpoint."
    ),
    "scanner": N_("Scanner {device}: {alerts}"),
    "gateway": N_("Gateway: {alert}"),
    "trust_stale": N_("Trust list out of date on lane {lane}: {action}"),
}


def alert_line(code: str, tr: Translator) -> str:
    """ "clock not trusted — passes show amber: …"."""
    pair = ALERT_TEXTS.get(code)
    if pair is None:
        return code.replace("_", " ")
    return f"{tr.gettext(pair[0])} — {tr.gettext(pair[1])}"


def alert_short(code: str, tr: Translator) -> str:
    pair = ALERT_TEXTS.get(code)
    return tr.gettext(pair[0]) if pair else code.replace("_", " ")


def stale_lanes(recent_reasons: dict[str, dict[str, int]]) -> list[str]:
    """Lanes whose recent scans were amber for want of a fresh trust list."""
    return sorted(
        lane
        for lane, by_reason in recent_reasons.items()
        if any(by_reason.get(r) for r in STALE_REASONS)
    )


def banners(snap: dict[str, Any], stale: list[str], tr: Translator) -> list[dict[str, str]]:
    """The alert strip, worded for people: trust first (it turns every pass amber), then
    congestion, devices and the gateway. Same order and words as status.js."""
    words = {k: tr.gettext(v) for k, v in PAGE_WORDS.items()}
    out = []
    action = tr.gettext(UPDATE_TRUST_ACTION)
    for lane in stale:
        text = words["trust_stale"].format(lane=lane, action=action)
        out.append({"level": "warn", "kind": "trust", "text": text})
    for lane in snap["lanes"]:
        if lane["over_capacity"]:
            text = words["congestion"].format(
                lane=lane["lane"],
                rate=f"{lane['per_minute']:.0f}",
                capacity=lane["capacity"],
                queue=lane["queue_estimate"],
            )
            out.append({"level": "fail", "kind": "congestion", "text": text})
    for dev in snap["devices"]:
        if dev["alerts"]:
            lines = "; ".join(alert_line(a, tr) for a in dev["alerts"])
            text = words["scanner"].format(device=dev["device"], alerts=lines)
            level = "fail" if not dev["online"] else "warn"
            out.append({"level": level, "kind": "device", "text": text})
    for alert in snap["health"].get("alerts", []):
        text = words["gateway"].format(alert=alert_line(alert, tr))
        out.append({"level": "warn", "kind": "gateway", "text": text})
    return out


def feed_row(row: dict[str, Any], tr: Translator) -> dict[str, Any]:
    """A feed line with its words: verdict, and the reason with what to do."""
    if row["typ"] == "manual":
        outcome = "admitted" if row["verdict"] == "pass" else "turned_away"
        why = f"{tr.gettext(PAGE_WORDS['manual_entry'])}: {tr.gettext(PAGE_WORDS[outcome])}"
        if row["reason"] in REFUSAL_TEXT:
            why += f" ({tr.gettext(REFUSAL_TEXT[row['reason']])})"
    else:
        why = reason_text(row["reason"], tr).line()
    return {**row, "verdict_text": verdict_text(row["verdict"], tr), "why": why}


def page_texts(tr: Translator) -> dict[str, Any]:
    """Everything status.js writes, translated once per page load."""
    return {
        "words": {k: tr.gettext(v) for k, v in PAGE_WORDS.items()},
        "verdicts": {k: tr.gettext(v) for k, v in VERDICT_TEXTS.items()},
        "reasons": {code: reason_text(code, tr).line() for code in REASON_TEXTS},
        "reasons_short": {code: reason_text(code, tr).short for code in REASON_TEXTS},
        "alerts": {code: alert_line(code, tr) for code in ALERT_TEXTS},
        "alerts_short": {code: alert_short(code, tr) for code in ALERT_TEXTS},
        "clocks": translated(CLOCK_TEXT, tr),
        "update_trust": tr.gettext(UPDATE_TRUST_ACTION),
    }


CATEGORY_TEXT = {
    "paper_declaration": N_("Paper declaration (ID card checked)"),
    "exempt": N_("Exempt (official duty, child with parent...)"),
    "other": N_("Other (explain to the supervisor)"),
}
OUTCOME_TEXT = {"admitted": N_("admitted"), "turned_away": N_("turned away")}
REFUSAL_TEXT = {
    "no_declaration": N_("No valid declaration"),
    "id_mismatch": N_("ID card does not match"),
    "symptoms": N_("Symptoms: sent to the health staff"),
    "refused_other": N_("Other (explain to the supervisor)"),
}
MANUAL_ERRORS = {
    "category": N_("Choose a category."),
    "doc4": N_("Type the last 4 letters or digits of the ID document."),
    "lane": N_("Choose a lane."),
    "outcome": N_("Choose admitted, or turned away with a reason."),
    "failed": N_("The entry could not be saved. Try again or call the supervisor."),
}
AUDIT_ACTIONS = {
    "login": N_("logged in"),
    "logout": N_("logged out"),
    "login_failed": N_("wrong password"),
    "login_rate_limited": N_("too many logins"),
    "csrf_refused": N_("form refused (expired)"),
    "manual_entry": N_("manual entry"),
    "start": N_("gateway started"),
    "stop": N_("gateway stopped"),
}
# Login errors are written in pages.py; listed here so `make i18n` extracts them.
LOGIN_ERRORS = (
    N_("The form expired. Please try again."),
    N_("Too many failed logins. Wait a minute."),
    N_("The gateway is busy. Try again shortly."),
    N_("Wrong user name or password."),
)


def translated(table: dict[str, str], tr: Translator) -> dict[str, str]:
    return {code: tr.gettext(text) for code, text in table.items()}


def manual_row(entry: dict[str, Any], tr: Translator) -> dict[str, Any]:
    """A manual entries table row with its words."""
    refusal = REFUSAL_TEXT.get(entry.get("reason") or "")
    return {
        **entry,
        "outcome_text": tr.gettext(OUTCOME_TEXT[entry["outcome"]]),
        "refusal_text": tr.gettext(refusal) if refusal else "",
        "category_text": tr.gettext(CATEGORY_TEXT.get(entry["category"], entry["category"])),
    }


def clock_text(state: str | None, tr: Translator) -> str:
    """ "on time" for synced; "-" before the first heartbeat."""
    if not state:
        return "-"
    message = CLOCK_TEXT.get(state)
    return tr.gettext(message) if message else state


STATUS_WORDS = {  # `chot gateway status` for people
    "title": N_("Gateway {gateway} (site {site}) at {time}"),
    "events": N_(
        "Events: {pending} waiting for the centre, {forwarded} sent, {rejected} refused by "
        "the centre; oldest waiting {lag} s"
    ),
    "no_alerts": N_("No alerts."),
    "alerts": N_("Alerts:"),
    "gateway_alert": N_("Gateway: {alert}"),
    "scanner_alert": N_("Scanner {device}: {alert}"),
    "scanners": N_("Scanners:"),
    "scanner": N_("{device}: {state}, confirmed up to {ack}, clock: {clock}"),
}


def status_lines(report: dict[str, Any], tr: Translator, tz: str | None) -> list[str]:
    """`chot gateway status` in the reader's language: the alerts first, with what to do."""
    from common.localtime import clock, offset_label

    w = translated(STATUS_WORDS, tr)
    words = translated(PAGE_WORDS, tr)
    when = f"{clock(report['now_ms'], tz)} {offset_label(tz, report['now_ms'])}"
    d = report["depth"]
    lines = [
        w["title"].format(gateway=report["gateway"], site=report["site"], time=when),
        w["events"].format(
            pending=d.get("pending", 0),
            forwarded=d.get("forwarded", 0),
            rejected=d.get("rejected", 0),
            lag=f"{report['forward_lag_s']:.0f}",
        ),
    ]
    active = report["active_alerts"]
    lines.append(w["alerts"] if active else w["no_alerts"])
    for a in active:
        line = alert_line(a["kind"], tr)
        if a["device"]:
            lines.append("  " + w["scanner_alert"].format(device=a["device"], alert=line))
        else:
            lines.append("  " + w["gateway_alert"].format(alert=line))
    if report["devices"]:
        lines.append(w["scanners"])
    for dev in report["devices"]:
        state = words["online"] if dev["online"] else words["offline"]
        text = w["scanner"].format(
            device=dev["dev"], state=state, ack=dev["ack"], clock=clock_text(dev["clock"], tr)
        )
        lines.append("  " + text)
    return lines
