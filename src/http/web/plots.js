// Greenwave web view: the phase termination chart (ATSPM's "Phase
// Termination"), from the same event log rows as the other plots. Loaded
// before web.js; uses its helpers (el, COLOURS) when called.
"use strict";

const TERMINATION_KINDS = { 4: "gap-out", 5: "max-out", 6: "force-off" };
const WALK = 21, WALK_COLOUR = "#a3c";

// Per phase: each termination with its kind, and each walk. A green that
// reaches yellow with no gap-out, max-out or force-off ended otherwise (a
// barrier, a preemption): "other", at its yellow.
function terminationsOf(rows) {
  const phases = new Map();
  const of = (p) => {
    if (!phases.has(p)) phases.set(p, { ends: [], walks: [], green: false, ended: false });
    return phases.get(p);
  };
  for (const [t, code, p] of rows) {
    if (code === GREEN) Object.assign(of(p), { green: true, ended: false });
    else if (TERMINATION_KINDS[code]) {
      const ph = of(p);
      ph.ends.push({ t, kind: TERMINATION_KINDS[code] });
      ph.ended = true;
    } else if (code === YELLOW) {
      const ph = of(p);
      if (ph.green && !ph.ended) ph.ends.push({ t, kind: "other" });
      ph.green = false;
    } else if (code === WALK) of(p).walks.push(t);
  }
  return phases;
}

// As ATSPM's consecutive count: only terminations in a run of at least n
// of the same kind.
function consecutive(ends, n) {
  if (n <= 1) return ends;
  const kept = [];
  for (let i = 0; i < ends.length;) {
    let j = i;
    while (j < ends.length && ends[j].kind === ends[i].kind) j++;
    if (j - i >= n) kept.push(...ends.slice(i, j));
    i = j;
  }
  return kept;
}

function drawTerminations(svg, rows, layout, from, to, n) {
  const numbers = layout.phases.map((p) => p.number).sort((a, b) => a - b);
  const left = 50, right = 10, top = 26, bottom = 30, rowH = 30;
  const w = +svg.getAttribute("width"), h = top + numbers.length * rowH + bottom;
  svg.setAttribute("height", h);
  svg.replaceChildren();
  const x = (t) => left + ((t - from) / Math.max(1, to - from)) * (w - left - right);
  const phases = terminationsOf(rows);
  const counts = { "gap-out": 0, "max-out": 0, "force-off": 0, other: 0, walk: 0 };
  numbers.forEach((number, k) => {
    const yc = top + k * rowH + rowH / 2;
    svg.append(el("svg:line", { x1: left, y1: yc + 10, x2: w - right, y2: yc + 10, stroke: "#eee" }));
    svg.append(el("svg:text", { x: left - 6, y: yc + 4, "text-anchor": "end" }, `Φ${number}`));
    const ph = phases.get(number) || { ends: [], walks: [] };
    for (const e of consecutive(ph.ends, n)) {
      if (e.t < from || e.t > to) continue;
      svg.append(el("svg:line", { class: `term ${e.kind}`, x1: x(e.t), y1: yc - 9, x2: x(e.t), y2: yc + 3, stroke: COLOURS[e.kind], "stroke-width": 1.5 },
        el("svg:title", {}, `Φ${number} ${e.kind} ${new Date(e.t).toLocaleTimeString()}`)));
      counts[e.kind]++;
    }
    for (const t of ph.walks) {
      if (t < from || t > to) continue;
      svg.append(el("svg:circle", { class: "walk", cx: x(t), cy: yc + 7, r: 1.8, fill: WALK_COLOUR }));
      counts.walk++;
    }
  });
  svg.append(el("svg:line", { x1: left, y1: h - bottom, x2: w - right, y2: h - bottom, stroke: "#444" }));
  for (let i = 0; i <= 6; i++) {
    const t = from + ((to - from) * i) / 6;
    svg.append(el("svg:text", { x: x(t), y: h - 10, "text-anchor": "middle" },
      new Date(t).toLocaleTimeString([], to - from < 3600000 ? {} : { hour: "2-digit", minute: "2-digit" })));
  }
  let lx = 60;
  for (const [kind, colour] of [...Object.entries(COLOURS), ["walk", WALK_COLOUR]]) {
    svg.append(el("svg:rect", { x: lx, y: 8, width: 8, height: 8, fill: colour }),
      el("svg:text", { x: lx + 12, y: 16 }, `${kind} ${counts[kind]}`));
    lx += 120;
  }
  const terminations = counts["gap-out"] + counts["max-out"] + counts["force-off"] + counts.other;
  svg.dataset.marks = String(terminations + counts.walk);
  svg.dataset.terminations = String(terminations);
}
