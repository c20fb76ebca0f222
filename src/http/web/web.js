// Greenwave web view: plain JS drawing HTML and SVG, no libraries (docs/web.md).
"use strict";

const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, ...children) {
  const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

async function getJSON(url) {
  const r = await fetch(url, { credentials: "same-origin" });
  if (!r.ok) throw new Error(`${url}: ${r.status} ${await r.text()}`);
  return r.json();
}

function alarmsText(s) {
  return s.alarms.length ? s.alarms.join("; ") : "";
}

function linkText(up) {
  return up === null ? "none" : up ? "up" : "DOWN";
}

// === the list ===

async function refreshList() {
  const error = document.getElementById("error");
  try {
    const rows = await getJSON("/api/intersections");
    const body = document.querySelector("#intersections tbody");
    body.replaceChildren(...rows.map((s) => {
      const link = el("a", { href: `/i/${encodeURIComponent(s.id)}` }, s.id);
      return el("tr", { "data-id": s.id, class: s.unit === "flash" ? "flash" : "" },
        el("td", {}, link), el("td", {}, s.name), el("td", { class: "unit" }, s.unit),
        el("td", {}, s.mode), el("td", {}, String(s.plan)), el("td", {}, linkText(s.link_up)),
        el("td", { class: "alarm" }, alarmsText(s)));
    }));
    document.getElementById("updated").textContent = `${rows.length} intersections, ${new Date().toLocaleTimeString()}`;
    error.hidden = true;
  } catch (e) {
    error.textContent = String(e);
    error.hidden = false;
  }
}

// === one intersection: the live ring-barrier diagram ===

function drawRings(layout) {
  const rings = document.getElementById("rings");
  const names = new Map(layout.phases.map((p) => [p.number, p]));
  const groupOf = new Map();
  layout.barrier_groups.forEach((g, i) => g.forEach((p) => groupOf.set(p, i)));
  rings.replaceChildren(...layout.rings.map((sequence, r) => {
    const row = el("div", { class: "ring" }, el("div", { class: "ring-label" }, `Ring ${r + 1}`));
    let group = null;
    for (const number of sequence) {
      if (group !== null && groupOf.get(number) !== group) row.append(el("div", { class: "barrier", title: "barrier" }));
      group = groupOf.get(number);
      const p = names.get(number);
      row.append(el("div", { class: "phase", id: `phase-${number}`, "data-vehicle": "red" },
        el("div", {}, el("b", {}, `Φ${number}`), " ", el("span", { class: "indication" }, "red")),
        el("div", { class: "name", title: p.name }, p.name),
        el("div", { class: "timer" }, "\u00a0"),
        el("div", { class: "ped" }, p.has_ped ? "don't walk" : "\u00a0"),
        el("div", { class: "calls" })));
    }
    return row;
  }));
  document.getElementById("detectors").replaceChildren(...layout.detectors.map((d) =>
    el("span", { class: "detector", id: `det-${d.channel}`, title: `${d.kind}, calls Φ${d.calls.join(",")}` }, String(d.channel))));
}

function showState(s) {
  document.getElementById("summary").textContent =
    `unit ${s.unit} · mode ${s.mode} · plan ${s.plan} · cabinet link ${linkText(s.link_up)}`;
  document.getElementById("alarms").textContent = alarmsText(s);
  const cycle = s.cycle_position_s === null ? "free" : `${s.cycle_position_s.toFixed(1)} / ${s.cycle_s.toFixed(0)} s`;
  document.getElementById("cycle").textContent = `cycle ${cycle} · ${new Date(s.at_unix_ms).toLocaleTimeString()}`;
  const timing = new Map(s.rings.filter((r) => r.phase !== null).map((r) => [r.phase, r]));
  for (const p of s.phases) {
    const box = document.getElementById(`phase-${p.number}`);
    if (!box) continue;
    box.dataset.vehicle = p.vehicle;
    box.querySelector(".indication").textContent = p.vehicle;
    const r = timing.get(p.number);
    let timer = "\u00a0";
    if (r) {
      timer = `${r.interval} ${r.elapsed_s.toFixed(1)} s`;
      if (r.max_elapsed_s !== null) timer += ` max ${r.max_elapsed_s.toFixed(1)}`;
      if (r.next !== null) timer += ` → Φ${r.next}`;
    }
    box.querySelector(".timer").textContent = timer;
    if (p.ped !== "dark") {
      let ped = p.ped;
      if (p.ped_countdown_s !== null) ped += ` ${p.ped_countdown_s}`;
      if (p.accessible_walk) ped += " · APS";
      box.querySelector(".ped").textContent = ped;
    }
    const calls = [];
    if (p.vehicle_call) calls.push(el("span", { title: "vehicle call" }, "call"));
    if (p.ped_call) calls.push(el("span", { title: "pedestrian call" }, "ped"));
    if (p.held) calls.push(el("span", { title: "held" }, "hold"));
    box.querySelector(".calls").replaceChildren(...calls);
  }
  for (const d of s.detectors) {
    const box = document.getElementById(`det-${d.channel}`);
    if (!box) continue;
    box.classList.toggle("on", d.presence);
    box.classList.toggle("fault", d.fault !== null);
  }
}

// === one intersection: plots from the event log ===

const GREEN = 1, GAP_OUT = 4, MAX_OUT = 5, FORCE_OFF = 6, YELLOW = 8, RED_CLEAR = 10, RED_CLEAR_END = 11, DET_ON = 82;

// Per phase: cycles (red start to red start, as ATSPM draws the PCD), each
// with its green and yellow start, and the vehicle arrivals on its detectors.
function cyclesOf(rows, phase) {
  const cycles = [];
  let open = null;
  for (const [t, code, param] of rows) {
    if (param !== phase) continue;
    if (code === RED_CLEAR) {
      if (open) { open.end = t; cycles.push(open); }
      open = { start: t, green: null, yellow: null, end: null };
    } else if (open && code === GREEN && open.green === null) open.green = t;
    else if (open && code === YELLOW && open.yellow === null) open.yellow = t;
  }
  return cycles;
}

// Arrivals: advance detectors projected to the stop bar by their travel
// time where the phase has any, else its stop-bar detectors.
function arrivalsOf(rows, layout, phase) {
  const vehicle = layout.detectors.filter((d) => d.kind !== "pedestrian" && d.calls.includes(phase));
  const advance = vehicle.filter((d) => d.kind === "advance");
  const used = new Map((advance.length ? advance : vehicle).map((d) => [d.channel, d.travel_time_s * 1000]));
  return rows.filter(([, code, ch]) => code === DET_ON && used.has(ch)).map(([t, , ch]) => t + used.get(ch));
}

// Splits: green begin to end of red clearance, with how green ended.
function splitsOf(rows, phase) {
  const splits = [];
  let open = null;
  for (const [t, code, param] of rows) {
    if (param !== phase) continue;
    if (code === GREEN) open = { at: t, end: null, ended: "other" };
    else if (open && code === GAP_OUT) open.ended = "gap-out";
    else if (open && code === MAX_OUT) open.ended = "max-out";
    else if (open && code === FORCE_OFF) open.ended = "force-off";
    else if (open && code === RED_CLEAR_END) { open.end = t; splits.push(open); open = null; }
  }
  return splits;
}

const COLOURS = { "gap-out": "#2a7", "max-out": "#d33", "force-off": "#36c", other: "#888" };

// Axes for time (x) against seconds (y); returns the scale functions.
function axes(svg, from, to, yMax, yLabel) {
  const w = +svg.getAttribute("width"), h = +svg.getAttribute("height");
  // The top margin holds the legend; the y axis leaves a tenth above the highest point.
  const left = 50, right = 10, top = 26, bottom = 30;
  yMax = Math.ceil(yMax * 1.1);
  const x = (t) => left + ((t - from) / Math.max(1, to - from)) * (w - left - right);
  const y = (s) => h - bottom - (s / Math.max(1, yMax)) * (h - top - bottom);
  svg.replaceChildren();
  svg.append(el("svg:line", { x1: left, y1: y(0), x2: w - right, y2: y(0), stroke: "#444" }));
  svg.append(el("svg:line", { x1: left, y1: y(0), x2: left, y2: top, stroke: "#444" }));
  const step = Math.max(10, Math.ceil(yMax / 6 / 10) * 10);
  for (let s = 0; s <= yMax; s += step) {
    svg.append(el("svg:text", { x: left - 6, y: y(s) + 4, "text-anchor": "end" }, String(s)));
  }
  for (let i = 0; i <= 6; i++) {
    const t = from + ((to - from) * i) / 6;
    svg.append(el("svg:text", { x: x(t), y: h - 10, "text-anchor": "middle" },
      new Date(t).toLocaleTimeString([], to - from < 3600000 ? {} : { hour: "2-digit", minute: "2-digit" })));
  }
  svg.append(el("svg:text", { x: 4, y: 14 }, yLabel));
  return { x, y };
}

function drawPcd(svg, rows, layout, phase, from, to) {
  const cycles = cyclesOf(rows, phase);
  const arrivals = arrivalsOf(rows, layout, phase);
  const yMax = Math.max(60, ...cycles.map((c) => (c.end - c.start) / 1000));
  const { x, y } = axes(svg, from, to, Math.ceil(yMax), "s in cycle");
  const line = (points, colour) => {
    if (points.length) svg.append(el("svg:polyline", { points: points.join(" "), fill: "none", stroke: colour, "stroke-width": 2, class: colour === "#2a2" ? "green-line" : "yellow-line" }));
  };
  line(cycles.filter((c) => c.green !== null).map((c) => `${x(c.start)},${y((c.green - c.start) / 1000)}`), "#2a2");
  line(cycles.filter((c) => c.yellow !== null).map((c) => `${x(c.start)},${y((c.yellow - c.start) / 1000)}`), "#eb0");
  let drawn = 0, c = 0;
  for (const t of arrivals) {
    while (c < cycles.length && cycles[c].end <= t) c++;
    if (c === cycles.length) break;
    if (t < cycles[c].start) continue;
    svg.append(el("svg:circle", { class: "arrival", cx: x(t), cy: y((t - cycles[c].start) / 1000), r: 1.6, fill: "#222" }));
    drawn++;
  }
  svg.dataset.points = String(drawn);
  svg.dataset.cycles = String(cycles.length);
}

function drawSplits(svg, rows, phase, from, to) {
  const splits = splitsOf(rows, phase);
  const yMax = Math.max(30, ...splits.map((s) => (s.end - s.at) / 1000));
  const { x, y } = axes(svg, from, to, Math.ceil(yMax), "split s");
  for (const s of splits) {
    svg.append(el("svg:circle", { class: `split ${s.ended}`, cx: x(s.at), cy: y((s.end - s.at) / 1000), r: 2.5, fill: COLOURS[s.ended] },
      el("svg:title", {}, `${s.ended} ${((s.end - s.at) / 1000).toFixed(1)} s`)));
  }
  let lx = 120;
  for (const [name, colour] of Object.entries(COLOURS)) {
    svg.append(el("svg:circle", { cx: lx, cy: 14, r: 4, fill: colour }), el("svg:text", { x: lx + 8, y: 18 }, name));
    lx += 90;
  }
  svg.dataset.points = String(splits.length);
}

async function loadPlots(id, layout) {
  const status = document.getElementById("log-status");
  const phase = +document.getElementById("phase").value;
  const hours = document.getElementById("hours").value;
  status.textContent = "reading the event log…";
  try {
    const log = await getJSON(`/api/events/${encodeURIComponent(id)}?hours=${hours}`);
    // The time axis starts at the first event when the log is younger than the window.
    const from = log.events.length ? Math.max(log.from_unix_ms, log.events[0][0]) : log.from_unix_ms;
    drawPcd(document.getElementById("pcd"), log.events, layout, phase, from, log.to_unix_ms);
    drawSplits(document.getElementById("splits"), log.events, phase, from, log.to_unix_ms);
    drawTerminations(document.getElementById("terminations"), log.events, layout, from, log.to_unix_ms, +document.getElementById("consecutive").value);
    status.textContent = `${log.events.length} events${log.truncated ? " (truncated: newest missing)" : ""}, read ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    status.textContent = String(e);
  }
}

async function intersectionPage() {
  const id = decodeURIComponent(location.pathname.split("/")[2]);
  const layout = await getJSON(`/api/intersection/${encodeURIComponent(id)}`);
  document.getElementById("title").textContent = `${layout.id}: ${layout.name}`;
  document.title = `Greenwave: ${layout.name}`;
  document.getElementById("events-link").href = `/i/${encodeURIComponent(id)}/events`;
  drawRings(layout);
  const select = document.getElementById("phase");
  select.replaceChildren(...layout.phases.map((p) => el("option", { value: p.number }, `Φ${p.number} ${p.name}`)));
  // Phase 2 is the usual coordinated main street.
  if (layout.phases.some((p) => p.number === 2)) select.value = "2";
  const live = document.getElementById("live");
  const source = new EventSource(`/live/${encodeURIComponent(id)}`);
  source.addEventListener("state", (e) => { showState(JSON.parse(e.data)); live.textContent = "(live)"; });
  source.onerror = () => { live.textContent = "(reconnecting)"; };
  const reload = () => loadPlots(id, layout);
  select.onchange = reload;
  document.getElementById("hours").onchange = reload;
  document.getElementById("consecutive").onchange = reload;
  document.getElementById("reload").onclick = reload;
  await reload();
  setInterval(reload, 60000);
}

if (document.body.dataset.page === "list") {
  refreshList();
  setInterval(refreshList, 2000);
} else if (document.body.dataset.page === "intersection") {
  intersectionPage().catch((e) => { document.getElementById("alarms").textContent = String(e); });
}
