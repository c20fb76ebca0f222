// Greenwave web view: a corridor's time-space diagram (docs/web.md).
// Plain SVG, no library. Time runs left to right; distance up, as travel
// time from the corridor's first member. For each member shown, the
// intervals of phase 2 (outbound, above its line) and phase 6 (inbound,
// below) from the event log: green from 1 (green begins) to 8 (yellow
// begins), yellow to 10 (red clearance begins), red until the next green.
// Diagonal lines are the ideal progression from each green start: slope
// one second of travel per second.
"use strict";

(() => {
  const NS = "http://www.w3.org/2000/svg";
  const OUTBOUND = 2, INBOUND = 6;
  const GREEN = 1, YELLOW = 8, RED_CLEAR = 10, RED_CLEAR_END = 11;
  const COLOURS = { green: "#2a2", yellow: "#eb0", red: "#d33" };
  // What each event begins, and what must have come before it.
  const BEGINS = { [GREEN]: "green", [YELLOW]: "yellow", [RED_CLEAR]: "red", [RED_CLEAR_END]: "red" };
  const BEFORE = { [GREEN]: "red", [YELLOW]: "green", [RED_CLEAR]: "yellow", [RED_CLEAR_END]: "red" };

  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const c of children) e.append(c);
    return e;
  }

  async function fetchJSON(url) {
    const r = await fetch(url, { credentials: "same-origin" });
    if (!r.ok) throw new Error(`${url}: ${r.status} ${await r.text()}`);
    return r.json();
  }

  // One phase's intervals over [from, to] as {state, start, end}: the
  // window's first stretch is what must have come before its first event.
  function intervalsOf(rows, phase, from, to) {
    const out = [];
    let state = null, start = from;
    for (const [t, code, p] of rows) {
      if (p !== phase || !(code in BEGINS)) continue;
      const prior = state === null ? BEFORE[code] : state;
      if (t > start) out.push({ state: prior, start, end: t });
      state = BEGINS[code];
      start = t;
    }
    if (state !== null && to > start) out.push({ state, start, end: to });
    return out;
  }

  function draw(plot, data) {
    const members = data.members;
    // The time axis starts at the first event when the log is younger
    // than the window: before it, nothing is known.
    const first = Math.min(...data.events.filter((e) => e.length).map((e) => e[0][0]));
    const from = Number.isFinite(first) ? Math.max(data.from_unix_ms, first) : data.from_unix_ms;
    const to = data.to_unix_ms;
    const w = +plot.getAttribute("width");
    const h = Math.max(320, 120 + 70 * members.length);
    plot.setAttribute("height", h);
    const left = 190, right = 60, top = 40, bottom = 40;
    const reaches = members.map((m) => m.reach_s);
    let lo = Math.min(...reaches), hi = Math.max(...reaches);
    const pad = Math.max(5, (hi - lo) * 0.08);
    lo -= pad; hi += pad;
    const x = (t) => left + ((t - from) / Math.max(1, to - from)) * (w - left - right);
    const y = (d) => top + (1 - (d - lo) / (hi - lo)) * (h - top - bottom);
    plot.replaceChildren();
    plot.append(svg("defs", {}, svg("clipPath", { id: "tsd-area" },
      svg("rect", { x: left, y: top, width: w - left - right, height: h - top - bottom }))));
    // Axes: time below, one labelled line per member.
    plot.append(svg("line", { x1: left, y1: h - bottom, x2: w - right, y2: h - bottom, stroke: "#444" }),
      svg("line", { x1: left, y1: top, x2: left, y2: h - bottom, stroke: "#444" }));
    for (let i = 0; i <= 6; i++) {
      const t = from + ((to - from) * i) / 6;
      plot.append(svg("text", { x: x(t), y: h - 22, "text-anchor": "middle" }, new Date(t).toLocaleTimeString()));
    }
    plot.append(svg("text", { x: w - right, y: h - 6, "text-anchor": "end" }, "time →"),
      svg("text", { x: 4, y: top - 8 }, "↑ s of travel from the first member"));
    let greens = 0;
    const area = svg("g", { "clip-path": "url(#tsd-area)" });
    members.forEach((m, k) => {
      const my = y(m.reach_s);
      plot.append(svg("line", { x1: left, y1: my, x2: w - right, y2: my, stroke: "#bbb" }),
        svg("a", { href: `/i/${encodeURIComponent(m.id)}` },
          svg("text", { x: left - 8, y: my + 4, "text-anchor": "end" }, `${m.name} (${m.reach_s.toFixed(1)} s)`)));
      for (const [phase, y0] of [[OUTBOUND, my - 10], [INBOUND, my + 2]]) {
        for (const iv of intervalsOf(data.events[k], phase, from, to)) {
          if (iv.state === "green") greens++;
          area.append(svg("rect", {
            class: `band ${iv.state}`, "data-member": m.id, "data-phase": phase,
            x: x(iv.start), y: y0, width: Math.max(0.5, x(iv.end) - x(iv.start)), height: 8, fill: COLOURS[iv.state],
          }, svg("title", {}, `${m.id} Φ${phase} ${iv.state} ${((iv.end - iv.start) / 1000).toFixed(1)} s`)));
        }
      }
    });
    // Ideal progression: phase 2 from the first member shown, phase 6
    // from the last, one second of travel per second.
    let lines = 0;
    const head = members[0];
    const hasInbound = (k) => data.events[k].some(([, , p]) => p === INBOUND);
    const tail = members.findLastIndex((m, k) => k > 0 && hasInbound(k));
    const wave = (k, phase, d0, d1, dashed) => {
      const span = Math.abs(d1 - d0) * 1000;
      for (const iv of intervalsOf(data.events[k], phase, from, to)) {
        if (iv.state !== "green" || iv.start === from) continue;
        area.append(svg("line", {
          class: `progression ${phase === OUTBOUND ? "outbound" : "inbound"}`,
          x1: x(iv.start), y1: y(d0), x2: x(iv.start + span), y2: y(d1),
          stroke: phase === OUTBOUND ? "#164" : "#36c", "stroke-width": 1.2, "stroke-dasharray": dashed ? "5 4" : "none",
        }));
        lines++;
      }
    };
    if (members.length > 1) {
      wave(0, OUTBOUND, head.reach_s, members[members.length - 1].reach_s, false);
      // Phase 6 from the last member that runs one (a T-junction may not).
      if (tail > 0) wave(tail, INBOUND, members[tail].reach_s, head.reach_s, true);
    }
    plot.append(area);
    let lx = left;
    for (const [name, colour] of Object.entries(COLOURS)) {
      plot.append(svg("rect", { x: lx, y: 8, width: 14, height: 8, fill: colour }), svg("text", { x: lx + 18, y: 16 }, name));
      lx += 70;
    }
    plot.append(svg("text", { x: lx + 10, y: 16 }, "above a line: Φ2 outbound · below: Φ6 inbound"));
    plot.dataset.greenBands = String(greens);
    plot.dataset.progressionLines = String(lines);
    return { greens, lines };
  }

  async function load(key) {
    const status = document.getElementById("status");
    const minutes = document.getElementById("minutes").value;
    status.textContent = "reading the event log…";
    try {
      const data = await fetchJSON(`/api/corridor/${encodeURIComponent(key)}/events?minutes=${minutes}`);
      document.getElementById("title").textContent = `Corridor ${data.number}: ${data.name}`;
      document.title = `Greenwave: ${data.name}`;
      document.getElementById("summary").textContent =
        `${data.members.map((m) => m.id).join(" → ")} · travel ${data.travel_s.map((t) => `${t} s`).join(", ") || "—"}`;
      document.getElementById("note").textContent = data.hidden
        ? `${data.hidden} member(s) of this corridor are outside your token's scope and are not shown.`
        : "";
      const { greens, lines } = draw(document.getElementById("tsd"), data);
      const rows = data.events.reduce((n, e) => n + e.length, 0);
      status.textContent = `${rows} events, ${greens} greens, ${lines} progression lines${data.truncated ? " (truncated: newest missing)" : ""}, read ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      status.textContent = "";
      document.getElementById("note").textContent = String(e);
    }
  }

  const key = decodeURIComponent(location.pathname.split("/")[2]);
  const reload = () => load(key);
  document.getElementById("minutes").onchange = reload;
  document.getElementById("reload").onclick = reload;
  reload();
  setInterval(reload, 10000);
})();
