// The fleet dashboard's only script: sign-in, the live stream, and plain DOM bars.
// The API token lives in localStorage and goes out only as an Authorization header.
"use strict";
(function () {
  const KEY = "fleetnode.token";
  const $ = (id) => document.getElementById(id);
  let controller = null;
  let retry = null;

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "style") e.style.cssText = v; else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return e;
  }
  const fmt = (x, d = 1) => (x === null || x === undefined ? "–" : Number(x).toFixed(d));
  const ms = (s) => (s === null || s === undefined ? "–" : `${Math.round(s * 1000)}`);

  function status(text, cls) { const s = $("status"); s.textContent = text; s.className = `status ${cls || ""}`; }

  function showLogin(message) {
    if (controller) controller.abort();
    clearTimeout(retry);
    $("dash").hidden = true; $("login").hidden = false; $("logout").hidden = true;
    const err = $("login-error");
    err.hidden = !message; err.textContent = message || "";
    status("not signed in", "");
  }

  async function api(path, token) {
    const r = await fetch(path, { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
    if (r.status === 401) throw Object.assign(new Error("the token was refused"), { unauthorized: true });
    if (!r.ok) {
      let msg = `${r.status}`;
      try { msg = (await r.json()).message || msg; } catch (_) { /* not JSON */ }
      throw new Error(msg);
    }
    return r.json();
  }

  function bars(container, entries, total, cls) {
    container.replaceChildren(...entries.map(([key, n]) => {
      const pct = total ? (100 * n) / total : 0;
      return el("div", { class: "bar", "data-key": key },
        el("span", { class: "name" }, key),
        el("span", { class: "track" }, el("span", { class: `fill ${cls || key}`, style: `display:block;width:${pct}%` })),
        el("span", { class: "n" }, n));
    }));
  }

  function renderFleet(s) {
    $("cars-total").textContent = s.cars;
    $("rate").textContent = fmt(s.tasks_per_s, 2);
    const l = s.latency_s;
    $("latency").textContent = `${ms(l.p50)} / ${ms(l.p95)} / ${ms(l.p99)} ms`;
    $("energy").textContent = `${fmt(s.energy_wh_per_h, 2)} Wh`;
    $("credits").textContent = fmt(s.credits_per_h, 3);
    $("overhead").textContent = `${fmt(100 * s.replication_overhead, 0)} %`;
    $("mismatches").textContent = `${s.mismatches} (${s.wrong_results} wrong)`;
    const link = s.link;
    $("link").textContent = link ? `${link.connected ? "connected" : "DOWN"}, ${link.reconnects} reconnects` : "–";
    $("link").className = `big ${link && !link.connected ? "error" : ""}`;
    const order = (o) => Object.entries(o).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    bars($("modes"), order(s.modes), s.cars);
    const reasons = order(s.reasons);
    bars($("reasons"), reasons, Math.max(1, s.cars - (s.modes.RUN || 0)), "reason");  // share of the cars not in RUN
    $("no-reasons").hidden = reasons.length > 0;
    $("no-batches").hidden = s.batches.length > 0;
    $("batches").replaceChildren(...s.batches.map((b) => {
      const pct = b.tasks ? Math.floor((100 * (b.done + b.failed)) / b.tasks) : 100;
      return el("div", { class: "batch bar", "data-id": b.id, "data-state": b.state },
        el("span", { class: "name" }, b.id, el("br"), el("span", { class: "meta" },
          `${b.state} · ${b.done}/${b.tasks} · ${b.in_flight} in flight · ${b.mismatches} mismatches`)),
        el("span", { class: "track" }, el("span", { class: "fill done", style: `display:block;width:${pct}%` })),
        el("span", { class: "n pct" }, `${pct} %`));
    }));
  }

  function renderCars(cars) {
    $("car-table").tBodies[0].replaceChildren(...cars.slice(0, 500).map((c) =>
      el("tr", { "data-car": c.car },
        el("td", {}, el("a", { href: `/cars/${encodeURIComponent(c.car)}` }, c.car)),
        el("td", {}, c.online ? c.mode : "OFFLINE"), el("td", {}, c.reasons.join(", ")),
        el("td", {}, c.reputation), el("td", {}, c.validated),
        el("td", { class: c.wrong ? "wrong" : "" }, c.wrong), el("td", {}, fmt(c.credits, 3)))));
  }

  // Server-sent events read with fetch, so the token stays in a header.
  async function stream(token) {
    controller = new AbortController();
    const r = await fetch("/v1/dashboard/stream", {
      headers: { Authorization: `Bearer ${token}`, Accept: "text/event-stream" },
      cache: "no-store", signal: controller.signal });
    if (r.status === 401) throw Object.assign(new Error("the token was refused"), { unauthorized: true });
    if (!r.ok || !r.body) throw new Error(`stream: ${r.status}`);
    status("live", "live");
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut); buf = buf.slice(cut + 2);
        let event = "message"; const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
        }
        if (event === "snapshot" && data.length) {
          renderFleet(JSON.parse(data.join("\n")));
          api("/v1/cars", token).then((c) => renderCars(c.cars)).catch(() => {});
        }
      }
    }
  }

  function runFleet(token) {
    stream(token).then(() => { status("reconnecting", "down"); retry = setTimeout(() => runFleet(token), 1000); },
      (e) => {
        if (e.name === "AbortError") return;
        if (e.unauthorized) { localStorage.removeItem(KEY); showLogin("The token was refused: sign in again."); return; }
        status(`link lost (${e.message}), retrying`, "down");
        retry = setTimeout(() => runFleet(token), 2000);
      });
  }

  function carId() { return decodeURIComponent(location.pathname.replace(/^\/cars\//, "")); }

  function renderCar(h) {
    const c = h.car;
    $("car-mode").textContent = c.online ? c.mode : "OFFLINE";
    $("car-rep").textContent = c.reputation;
    $("car-valid").textContent = `${c.validated} / ${c.wrong}`;
    $("car-credits").textContent = fmt(c.credits, 3);
    const now = h.t; const start = now - 24 * 3600;
    const segs = h.timeline.map((m, i) => {
      const from = Math.max(start, m.t); const to = i + 1 < h.timeline.length ? h.timeline[i + 1].t : now;
      const mode = m.online ? m.mode : "OFFLINE";
      return el("div", { class: `seg ${mode}`, "data-mode": mode, title: `${mode} ${m.reasons.join(", ")} from ${new Date(m.t * 1000).toLocaleString()}`,
        style: `width:${Math.max(0.2, (100 * (to - from)) / (now - start))}%` });
    });
    const lead = h.timeline.length ? Math.max(0, h.timeline[0].t - start) : now - start;
    $("timeline").replaceChildren(el("div", { class: "seg", style: `width:${(100 * lead) / (now - start)}%` }), ...segs);
    const modes = [...new Set(h.timeline.map((m) => (m.online ? m.mode : "OFFLINE")))];
    $("timeline-legend").replaceChildren(...modes.map((m) => el("span", {}, el("i", { class: `sw ${m}` }), m)));
    $("no-history").hidden = h.attempts.length > 0;
    $("history").tBodies[0].replaceChildren(...h.attempts.map((a) => el("tr", { "data-job": a.job_id },
      el("td", {}, new Date(a.received * 1000).toLocaleTimeString()), el("td", {}, a.batch), el("td", {}, a.input),
      el("td", {}, a.state), el("td", { class: `verdict-${a.verdict || "none"}` }, a.verdict || "pending"),
      el("td", {}, `${ms(a.received - a.sent)} ms`))));
  }

  function runCar(token) {
    const id = carId();
    $("car-id").textContent = id;
    api(`/v1/cars/${encodeURIComponent(id)}/history`, token).then((h) => {
      status("live", "live"); renderCar(h); retry = setTimeout(() => runCar(token), 2000);
    }, (e) => {
      if (e.unauthorized) { localStorage.removeItem(KEY); showLogin("The token was refused: sign in again."); return; }
      status(e.message, "down"); retry = setTimeout(() => runCar(token), 4000);
    });
  }

  function start(token) {
    $("login").hidden = true; $("dash").hidden = false; $("logout").hidden = false;
    status("connecting", "");
    if (document.body.dataset.page === "car") runCar(token); else runFleet(token);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const token = $("token").value.trim();
      api("/v1/cars", token).then(() => { localStorage.setItem(KEY, token); $("token").value = ""; start(token); },
        (e) => showLogin(e.unauthorized ? "The token was refused: check it and try again." : `Cannot sign in: ${e.message}`));
    });
    $("logout").addEventListener("click", () => { localStorage.removeItem(KEY); showLogin(""); });
    const saved = localStorage.getItem(KEY);
    if (saved) start(saved); else showLogin("");
  });
})();
