// chot gateway status page: live feed over Server-Sent Events, and a periodic refresh of
// the scanners, lanes and alert banners from /api/status. Plain DOM, no libraries; every
// value goes in through textContent, never as HTML. Words come translated from the page
// (#page-texts); times are shown in the site's time zone (data-tz), like the rows the server
// rendered, whatever zone the browser is in.
"use strict";

(function () {
  const root = document.getElementById("status-root");
  if (!root) return;
  const refreshMs = Number(root.dataset.refreshMs) || 2000;
  const feedMax = 60;
  const texts = JSON.parse(document.getElementById("page-texts").textContent);
  const words = texts.words;
  const timeFormat = new Intl.DateTimeFormat(root.dataset.lang || "vi", {
    timeZone: root.dataset.tz || "Asia/Ho_Chi_Minh",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
  });
  const staleReasons = ["trust_stale", "no_trust_list"];

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, (all, key) => (key in values ? String(values[key]) : all));
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function clock(ms) {
    if (!ms) return "-";
    const parts = {};
    for (const p of timeFormat.formatToParts(new Date(ms))) parts[p.type] = p.value;
    return parts.hour + ":" + parts.minute + ":" + parts.second;
  }

  function dash(value) {
    return value === null || value === undefined ? "-" : value;
  }

  // --- live feed ------------------------------------------------------------------------
  const feed = document.getElementById("feed");
  const feedState = document.getElementById("feed-state");

  function addDecision(d) {
    if (feed.querySelector('li[data-id="' + d.id + '"]')) return;
    const li = el("li", d.verdict + " new");
    li.dataset.id = d.id;
    li.dataset.reason = d.reason || "";
    let why = texts.reasons[d.reason] || d.reason;
    if (d.typ === "manual") {
      why = words.manual_entry + ": " + (d.verdict === "pass" ? words.admitted : words.turned_away);
    }
    li.append(
      el("span", "t", clock(d.received_ms)),
      el("span", "pill " + d.verdict, texts.verdicts[d.verdict] || d.verdict),
      el("span", "why", why),
      el("span", "where", (d.lane || "-") + " · " + d.device),
    );
    if (d.typ === "scan" && staleReasons.includes(d.reason)) staleLane(d.lane || "-");
    feed.prepend(li);
    while (feed.children.length > feedMax) feed.lastElementChild.remove();
  }

  function openFeed() {
    const source = new EventSource("/api/feed?after=" + (Number(root.dataset.lastId) || 0));
    source.addEventListener("open", () => {
      feedState.textContent = words.live;
      feedState.className = "small live";
    });
    source.addEventListener("error", () => {
      feedState.textContent = words.reconnecting;
      feedState.className = "small down";
    });
    source.addEventListener("decision", (msg) => {
      try {
        addDecision(JSON.parse(msg.data));
        root.dataset.lastId = msg.lastEventId;
      } catch (err) {
        console.error("bad feed message", err);
      }
    });
  }

  // --- periodic status -----------------------------------------------------------------
  // Trust banners come from the decisions (page load: the last minutes; then the feed);
  // the others from each /api/status refresh, worded as the server words them (texts.py).
  const trustBanners = new Map();
  for (const node of document.querySelectorAll("#banners .banner.trust")) {
    trustBanners.set(node.dataset.lane, node);
  }

  function staleLane(lane) {
    if (trustBanners.has(lane)) return;
    const node = el("div", "banner warn trust", fill(words.trust_stale, { lane: lane, action: texts.update_trust }));
    node.dataset.lane = lane;
    trustBanners.set(lane, node);
    document.getElementById("banners").prepend(node);
  }

  function alertLine(code) {
    return texts.alerts[code] || code.replace(/_/g, " ");
  }

  function renderBanners(snap) {
    const out = [...trustBanners.values()];
    for (const l of snap.lanes) {
      if (!l.over_capacity) continue;
      out.push(el("div", "banner fail congestion", fill(words.congestion, {
        lane: l.lane, rate: Math.round(l.per_minute), capacity: l.capacity, queue: l.queue_estimate,
      })));
    }
    for (const d of snap.devices) {
      if (!d.alerts.length) continue;
      out.push(el("div", "banner " + (d.online ? "warn" : "fail") + " device", fill(words.scanner, {
        device: d.device, alerts: d.alerts.map(alertLine).join("; "),
      })));
    }
    for (const a of (snap.health && snap.health.alerts) || []) {
      out.push(el("div", "banner warn gateway", fill(words.gateway, { alert: alertLine(a) })));
    }
    document.getElementById("banners").replaceChildren(...out);
  }

  function renderLanes(lanes) {
    const box = document.getElementById("lanes");
    if (!lanes.length) {
      box.replaceChildren(el("p", "muted", words.no_scans));
      return;
    }
    box.replaceChildren(...lanes.map((l) => {
      const card = el("div", "lane" + (l.over_capacity ? " over" : ""));
      card.dataset.lane = l.lane;
      const nums = el("div", "nums");
      for (const [cls, value, label] of [["pass", l.passed, words.passed], ["fail", l.failed, words.failed],
                                         ["warn", l.warned, words.warned], ["manual", l.manual, words.manual]]) {
        const num = el("div", "num " + cls);
        num.append(el("b", null, value), el("span", null, label));
        nums.append(num);
      }
      const values = { rate: Math.round(l.per_minute), capacity: l.capacity, queue: l.queue_estimate };
      const rate = fill(l.capacity ? words.capacity : words.per_min, values);
      const reasons = el("p", "reasons");
      for (const [reason, n] of Object.entries(l.failed_by_reason)) {
        const span = el("span", null, (texts.reasons_short[reason] || reason) + " " + n);
        span.title = reason;
        reasons.append(span);
      }
      card.append(el("h3", null, l.lane), nums, el("p", "rate", rate), reasons);
      return card;
    }));
  }

  function renderDevices(devices, online) {
    document.getElementById("online-count").textContent =
      fill(words.of_online, { online: online, total: devices.length });
    const body = document.getElementById("devices");
    if (!devices.length) {
      const row = el("tr");
      const cell = el("td", "muted", words.no_scanner);
      cell.colSpan = 10;
      row.append(cell);
      body.replaceChildren(row);
      return;
    }
    body.replaceChildren(...devices.map((d) => {
      const row = el("tr", d.online ? "online" : "offline");
      row.dataset.device = d.device;
      const state = el("td");
      state.append(el("span", "pill " + (d.online ? "pass" : "fail"),
                      d.online ? words.online : (words[d.state] || d.state)));
      const alerts = el("td", "alerts");
      for (const code of d.alerts) {
        const span = el("span", "alert", texts.alerts_short[code] || code.replace(/_/g, " "));
        span.title = alertLine(code);
        alerts.append(span);
      }
      row.append(
        el("td", null, d.device), el("td", null, dash(d.lane)), state,
        el("td", null, clock(d.last_seen_ms)), el("td", null, dash(d.fps)),
        el("td", null, dash(d.decoder_ms)), el("td", null, dash(d.outbox_depth)),
        el("td", null, dash(d.clock && (texts.clocks[d.clock] || d.clock))), el("td", null, dash(d.trust_version)),
        alerts,
      );
      return row;
    }));
  }

  async function refresh() {
    try {
      const response = await fetch("/api/status", { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) {
        window.location.assign("/login");
        return;
      }
      if (!response.ok) throw new Error("status " + response.status);
      const snap = await response.json();
      renderBanners(snap);
      renderLanes(snap.lanes);
      renderDevices(snap.devices, snap.devices_online);
    } catch (err) {
      console.error("status refresh failed", err);
    } finally {
      window.setTimeout(refresh, refreshMs);
    }
  }

  openFeed();
  window.setTimeout(refresh, refreshMs);
})();
