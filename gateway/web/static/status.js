// chot gateway status page: live feed over Server-Sent Events, and a periodic refresh of
// the scanners, lanes and alert banners from /api/status. Plain DOM, no libraries; every
// value goes in through textContent, never as HTML.
"use strict";

(function () {
  const root = document.getElementById("status-root");
  if (!root) return;
  const refreshMs = Number(root.dataset.refreshMs) || 2000;
  const feedMax = 60;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function clock(ms) {
    if (!ms) return "-";
    return new Date(ms).toLocaleTimeString([], { hour12: false });
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
    li.append(
      el("span", "t", clock(d.received_ms)),
      el("span", "pill " + d.verdict, d.verdict),
      el("span", "why", d.typ === "manual" ? "manual entry" : d.reason),
      el("span", "where", (d.lane || "-") + " · " + d.device),
    );
    feed.prepend(li);
    while (feed.children.length > feedMax) feed.lastElementChild.remove();
  }

  function openFeed() {
    const source = new EventSource("/api/feed?after=" + (Number(root.dataset.lastId) || 0));
    source.addEventListener("open", () => {
      feedState.textContent = "live";
      feedState.className = "small live";
    });
    source.addEventListener("error", () => {
      feedState.textContent = "reconnecting…";
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
  function renderBanners(banners) {
    const box = document.getElementById("banners");
    box.replaceChildren(...banners.map((b) => el("div", "banner " + b.level + " " + b.kind, b.text)));
  }

  function renderLanes(lanes) {
    const box = document.getElementById("lanes");
    if (!lanes.length) {
      box.replaceChildren(el("p", "muted", "No scans yet today."));
      return;
    }
    box.replaceChildren(...lanes.map((l) => {
      const card = el("div", "lane" + (l.over_capacity ? " over" : ""));
      card.dataset.lane = l.lane;
      const nums = el("div", "nums");
      for (const [cls, value, label] of [["pass", l.passed, "passed"], ["fail", l.failed, "failed"],
                                         ["warn", l.warned, "warned"], ["manual", l.manual, "manual"]]) {
        const num = el("div", "num " + cls);
        num.append(el("b", null, value), el("span", null, label));
        nums.append(num);
      }
      let rate = Math.round(l.per_minute) + "/min";
      if (l.capacity) rate += " of " + l.capacity + "/min · queue ≈ " + l.queue_estimate;
      const reasons = el("p", "reasons");
      for (const [reason, n] of Object.entries(l.failed_by_reason)) {
        reasons.append(el("span", null, reason + " " + n));
      }
      card.append(el("h3", null, l.lane), nums, el("p", "rate", rate), reasons);
      return card;
    }));
  }

  function renderDevices(devices, online) {
    document.getElementById("online-count").textContent =
      online + " of " + devices.length + " online";
    const body = document.getElementById("devices");
    if (!devices.length) {
      const row = el("tr");
      const cell = el("td", "muted", "No scanner has reported yet.");
      cell.colSpan = 10;
      row.append(cell);
      body.replaceChildren(row);
      return;
    }
    body.replaceChildren(...devices.map((d) => {
      const row = el("tr", d.online ? "online" : "offline");
      row.dataset.device = d.device;
      const state = el("td");
      state.append(el("span", "pill " + (d.online ? "pass" : "fail"), d.online ? "online" : d.state));
      row.append(
        el("td", null, d.device), el("td", null, dash(d.lane)), state,
        el("td", null, clock(d.last_seen_ms)), el("td", null, dash(d.fps)),
        el("td", null, dash(d.decoder_ms)), el("td", null, dash(d.outbox_depth)),
        el("td", null, dash(d.clock)), el("td", null, dash(d.trust_version)),
        el("td", "alerts", d.alert_text.join(", ")),
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
      renderBanners(snap.banners);
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
