"""The questions a health authority asks of the central store, for both the CLI and the API.

Every query runs on both backends (`:name` parameters, portable SQL). Times are Unix ms.
Tracing queries (`visits`, `contacts`) take the operator's name (and the role of their
credential) and write the access log before returning: access to tracing is restricted and
logged. People read times in the site's zone: `local_times` turns each time field `X` into
`X_ms` and `X_local` (ISO 8601 with the offset, e.g. 2021-08-20T09:15:00+07:00); tables
(central/human.py) show the local one.
"""

import datetime as dt
import json
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from central import audit
from central.store import Store
from common.localtime import local

DEFAULT_TZ = "Asia/Ho_Chi_Minh"
HOUR_MS = 3_600_000
PERSON_TYPES = "('scan', 'manual')"  # events that mean "a person was at a checkpoint"
TIME_FIELDS = ("t", "first_t", "last_t", "at", "received_at", "last_received")


def log_access(
    store: Store,
    operator: str,
    via: str,
    query: str,
    params: dict,
    rows: int,
    role: str | None = None,
) -> None:
    """Record who (name, credential role) ran which query, when, with which parameters, and
    how many rows. Durable on return: on the leader, or while there is none in the local
    audit spool (central/audit.py); AuditUnavailable refuses the query otherwise."""
    audit.record(store, operator, via, query, params, rows, role)


def iso_local(t_ms: int, tz: str) -> str:
    """2021-08-20T09:15:00+07:00: what a person reads, in the site's zone."""
    return local(t_ms, tz).isoformat(timespec="seconds")


def local_times(rows: list[dict], timezone_for: Callable[[str | None], str]) -> list[dict]:
    """Each time field X (Unix ms) -> X_ms and X_local in the row's site's zone (JSON)."""
    out = []
    for row in rows:
        tz = timezone_for(row.get("site"))
        item: dict[str, Any] = {}
        for key, value in row.items():
            if key in TIME_FIELDS and isinstance(value, int):
                item[f"{key}_ms"] = value
                item[f"{key}_local"] = iso_local(value, tz) if value else None
            else:
                item[key] = value
        out.append(item)
    return out


def _require_operator(operator: str) -> None:
    if not operator or not operator.strip():
        raise PermissionError("tracing queries need an operator name (they are audited)")


def visits(
    store: Store,
    sub: bytes,
    t_from: int,
    t_to: int,
    *,
    operator: str,
    via: str = "cli",
    role: str | None = None,
) -> list[dict[str, Any]]:
    """Every checkpoint event of one subject pseudonym in [t_from, t_to): tracing."""
    _require_operator(operator)
    rows = store.fetch(
        "SELECT t, site, dev, lane, typ, verdict, reason, ref, kind, clock FROM events "
        f"WHERE sub = :sub AND t >= :t_from AND t < :t_to AND typ IN {PERSON_TYPES} "
        "ORDER BY t, dev, seq",
        {"sub": sub, "t_from": t_from, "t_to": t_to},
    )
    result = [{**r, "ref": _hex(r["ref"])} for r in rows]
    params = {"sub": sub.hex(), "from": t_from, "to": t_to}
    log_access(store, operator, via, "visits", params, len(result), role)
    return result


def contacts(
    store: Store,
    sub: bytes,
    window_min: int,
    t_from: int,
    t_to: int,
    *,
    operator: str,
    via: str = "cli",
    role: str | None = None,
) -> list[dict[str, Any]]:
    """Other subjects seen at the same site within ±window_min of one of the subject's visits
    in [t_from, t_to): contact tracing. One row per (contact, site), closest gap first."""
    _require_operator(operator)
    # Two steps, not one self-join: the subject's few visits (sub, t index), then each visit's
    # neighbours with constant bounds (site, t index, one day partition) — a plan that stays
    # fast at any table size, where the planner may hash-join the whole table otherwise.
    seen = store.fetch(
        f"SELECT site, t FROM events WHERE sub = :sub AND t >= :t_from AND t < :t_to "
        f"AND typ IN {PERSON_TYPES}",
        {"sub": sub, "t_from": t_from, "t_to": t_to},
    )
    window = window_min * 60_000
    found: dict[tuple[bytes, str], dict[str, Any]] = {}
    events: dict[tuple[bytes, str], set[bytes]] = {}
    for visit in seen:
        near = store.fetch(
            "SELECT eid, sub, t FROM events WHERE site = :site AND t >= :lo AND t <= :hi "
            f"AND typ IN {PERSON_TYPES} AND sub IS NOT NULL AND sub <> :sub",
            {
                "site": visit["site"],
                "lo": visit["t"] - window,
                "hi": visit["t"] + window,
                "sub": sub,
            },
        )
        for other in near:
            key = (bytes(other["sub"]), visit["site"])
            gap = abs(other["t"] - visit["t"])
            item = found.setdefault(
                key,
                {
                    "sub": key[0].hex(),
                    "site": key[1],
                    "first_t": other["t"],
                    "last_t": other["t"],
                    "events": 0,
                    "min_gap_ms": gap,
                },
            )
            item["first_t"] = min(item["first_t"], other["t"])
            item["last_t"] = max(item["last_t"], other["t"])
            item["min_gap_ms"] = min(item["min_gap_ms"], gap)
            events.setdefault(key, set()).add(bytes(other["eid"]))
    for key, item in found.items():
        item["events"] = len(events[key])
    result = sorted(found.values(), key=lambda c: (c["min_gap_ms"], c["first_t"], c["sub"]))
    log_access(
        store,
        operator,
        via,
        "contacts",
        {"sub": sub.hex(), "window_min": window_min, "from": t_from, "to": t_to},
        len(result),
        role,
    )
    return result


def day_range(day: dt.date, tz: str = DEFAULT_TZ) -> tuple[int, int]:
    """[start, end) of a local calendar day in Unix ms (Vietnam: UTC+7, no DST)."""
    zone = ZoneInfo(tz)
    start = dt.datetime.combine(day, dt.time(), zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def report(
    store: Store, day: dt.date, site: str | None = None, days: int = 1, tz: str = DEFAULT_TZ
) -> list[dict[str, Any]]:
    """Accepted / rejected report: per site, local day and lane, how many passed, failed (with
    the reasons) and were warned (staff checked by hand); camera scans and manual entries also
    apart (`scans`: pass/fail/warn; `manual`: admitted/turned_away, and by category)."""
    result = []
    for offset in range(days):
        current = day + dt.timedelta(days=offset)
        start, end = day_range(current, tz)
        params = {"start": start, "end": end, "site": site}
        where = f"WHERE t >= :start AND t < :end AND typ IN {PERSON_TYPES} " + (
            "AND site = :site " if site else ""
        )
        rows = store.fetch(
            "SELECT site, lane, typ, verdict, reason, COUNT(*) AS n FROM events "
            + where
            + "GROUP BY site, lane, typ, verdict, reason",
            params,
        )
        groups: dict[tuple[str, str], dict[str, Any]] = {}

        def group_for(
            r: dict[str, Any], current: dt.date = current, groups: dict = groups
        ) -> dict[str, Any]:
            key = (r["site"], r["lane"] or "-")
            return groups.setdefault(
                key,
                {
                    "site": key[0],
                    "day": current.isoformat(),
                    "lane": key[1],
                    "total": 0,
                    "pass": 0,
                    "fail": 0,
                    "warn": 0,
                    "fail_reasons": {},
                    "scans": {"pass": 0, "fail": 0, "warn": 0},
                    "manual": {"admitted": 0, "turned_away": 0, "by_category": {}},
                },
            )

        for r in rows:
            group = group_for(r)
            verdict = r["verdict"] if r["verdict"] in ("pass", "fail", "warn") else "fail"
            group["total"] += r["n"]
            group[verdict] += r["n"]
            if r["typ"] == "scan":
                group["scans"][verdict] += r["n"]
            if verdict == "fail":
                reason = r["reason"] or "unknown"
                group["fail_reasons"][reason] = group["fail_reasons"].get(reason, 0) + r["n"]
        # manual entries are few (typed by staff): their category is read from `extra`
        manual = store.fetch(
            "SELECT site, lane, verdict, extra FROM events "
            + where.replace(f"typ IN {PERSON_TYPES}", "typ = 'manual'"),
            params,
        )
        for r in manual:
            outcome = "admitted" if r["verdict"] == "pass" else "turned_away"
            counts = group_for(r)["manual"]
            counts[outcome] += 1
            category = _manual_category(r["extra"])
            per = counts["by_category"].setdefault(category, {"admitted": 0, "turned_away": 0})
            per[outcome] += 1
        result.extend(groups[k] for k in sorted(groups))
    return result


def _manual_category(extra: Any) -> str:
    """The category of a manual entry's `extra` (JSON text in SQLite, a dict from jsonb)."""
    if isinstance(extra, str | bytes):
        try:
            extra = json.loads(extra)
        except ValueError:
            return "unknown"
    category = extra.get("category") if isinstance(extra, dict) else None
    return category if isinstance(category, str) else "unknown"


def health(store: Store, t_from: int, t_to: int) -> list[dict[str, Any]]:
    """Device and gateway health: per signer and hour, events, verdicts and clock states.

    A device whose hours go quiet, or whose clock turns `unknown`, needs a visit."""
    rows = store.fetch(
        f"SELECT dev, site, t / {HOUR_MS} AS hour, typ, verdict, clock, COUNT(*) AS n, "
        "MAX(t) AS last_t, MAX(received_at) AS last_received FROM events "
        "WHERE t >= :t_from AND t < :t_to GROUP BY 1, 2, 3, 4, 5, 6",
        {"t_from": t_from, "t_to": t_to},
    )
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for r in rows:
        key = (r["dev"], r["hour"])
        item = out.setdefault(
            key,
            {
                "dev": r["dev"],
                "site": r["site"],
                "hour": _iso(r["hour"] * HOUR_MS),
                "events": 0,
                "pass": 0,
                "fail": 0,
                "warn": 0,
                "load": 0,
                "clock_synced": 0,
                "clock_bounded": 0,
                "clock_unknown": 0,
                "last_t": 0,
                "last_received": 0,
            },
        )
        item["events"] += r["n"]
        if r["typ"] == "load":
            item["load"] += r["n"]
        elif r["verdict"] in ("pass", "fail", "warn"):
            item[r["verdict"]] += r["n"]
        if f"clock_{r['clock']}" in item:
            item[f"clock_{r['clock']}"] += r["n"]
        item["last_t"] = max(item["last_t"], r["last_t"])
        item["last_received"] = max(item["last_received"], r["last_received"])
    return [out[k] for k in sorted(out)]


def load(store: Store, site: str | None = None, since_ms: int | None = None) -> list[dict]:
    """Site load for diverting traffic: the latest "load" event of each gateway."""
    rows = store.fetch(
        "SELECT e.site AS site, e.dev AS gateway, e.t AS t, e.received_at AS received_at, "
        "e.extra AS extra FROM events e JOIN (SELECT dev, MAX(t) AS t FROM events "
        "WHERE typ = 'load' AND t >= :since GROUP BY dev) last ON last.dev = e.dev "
        "AND last.t = e.t WHERE e.typ = 'load'"
        + (" AND e.site = :site" if site else "")
        + " ORDER BY e.site, e.dev",
        {"since": since_ms or 0, "site": site},
    )
    return [{**r, "extra": json.loads(r["extra"]) if r["extra"] else {}} for r in rows]


def stats(store: Store) -> dict[str, Any]:
    """Counts for the demo and the proof that nothing was lost: every event once, no
    (dev, ep, seq) twice, no gaps in any sequence. A unit numbers its events from 1 within each
    outbox epoch `ep` (a re-imaged unit starts a new one; protocol/ack.py), so the accounting
    is per (dev, ep): `by_device[dev]["epochs"][ep]` (ep 0: events from before epochs), and
    the device's figures are their sums."""
    total = store.fetch("SELECT COUNT(*) AS n, COUNT(DISTINCT eid) AS d FROM events")[0]
    dev_seq = store.fetch(
        "SELECT COALESCE(SUM(n - 1), 0) AS extra FROM (SELECT COUNT(*) AS n FROM events "
        "GROUP BY dev, COALESCE(ep, 0), seq HAVING COUNT(*) > 1) x"
    )[0]
    verdicts = store.fetch("SELECT verdict, COUNT(*) AS n FROM events GROUP BY verdict")
    epochs = store.fetch(
        "SELECT dev, COALESCE(ep, 0) AS ep, COUNT(*) AS n, MIN(seq) AS min_seq, "
        "MAX(seq) AS max_seq, COUNT(DISTINCT seq) AS distinct_seq FROM events "
        "GROUP BY dev, COALESCE(ep, 0) ORDER BY dev, COALESCE(ep, 0)"
    )
    by_device: dict[str, dict[str, Any]] = {}
    for r in epochs:
        epoch = {
            "count": int(r["n"]),
            "min_seq": int(r["min_seq"]),
            "max_seq": int(r["max_seq"]),
            # gaps in 1..max_seq: each epoch numbers its events from 1
            "missing": int(r["max_seq"] - r["distinct_seq"]),
        }
        device = by_device.setdefault(
            r["dev"], {"count": 0, "min_seq": None, "max_seq": 0, "missing": 0, "epochs": {}}
        )
        device["epochs"][int(r["ep"])] = epoch
        device["count"] += epoch["count"]
        device["missing"] += epoch["missing"]
        device["max_seq"] = max(device["max_seq"], epoch["max_seq"])
        low = device["min_seq"]
        device["min_seq"] = epoch["min_seq"] if low is None else min(low, epoch["min_seq"])
    return {
        "events_central": int(total["n"]),
        "duplicates": int(total["n"] - total["d"]) + int(dev_seq["extra"]),
        "by_verdict": {(r["verdict"] or "none"): int(r["n"]) for r in verdicts},
        "by_device": by_device,
    }


def access_log(store: Store, limit: int = 100) -> list[dict[str, Any]]:
    return store.fetch(
        "SELECT at, operator, role, via, query, params, row_count FROM access_log "
        "ORDER BY id DESC LIMIT :limit",
        {"limit": limit},
    )


def _hex(value: bytes | None) -> str | None:
    return None if value is None else bytes(value).hex()


def _iso(t_ms: int) -> str:
    return dt.datetime.fromtimestamp(t_ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%MZ")
