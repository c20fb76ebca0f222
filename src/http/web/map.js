// Greenwave web view: the map on the list page (docs/web.md#the-map).
// Offline: no tiles, no library. Each intersection with a location in its
// controller file is a marker placed by an equirectangular projection of
// its coordinates, coloured by its state and alarms, linking to its page;
// each corridor is a line through its located members in order.
"use strict";

(() => {
  const NS = "http://www.w3.org/2000/svg";

  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const c of children) e.append(c);
    return e;
  }

  function html(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const c of children) e.append(c);
    return e;
  }

  async function fetchJSON(url) {
    const r = await fetch(url, { credentials: "same-origin" });
    if (!r.ok) throw new Error(`${url}: ${r.status} ${await r.text()}`);
    return r.json();
  }

  // What a marker's colour says, first match wins.
  const STATES = [
    ["alarm", "#d33", (s) => s.alarms.length > 0],
    ["flash", "#eb0", (s) => s.unit === "flash"],
    ["run", "#2a2", (s) => s.unit === "run"],
    ["other", "#888", () => true], // starting, all red
  ];
  const stateOf = (s) => STATES.find(([, , test]) => test(s));

  // Degrees to the SVG's pixels: x = lon · cos(mid latitude), y = lat
  // (equirectangular), scaled alike on both axes to fit with a margin.
  // At least about 300 m is shown, so one intersection is not a blow-up.
  function projection(points, w, h, margin) {
    const lats = points.map((p) => p.lat), lons = points.map((p) => p.lon);
    const mid = (Math.min(...lats) + Math.max(...lats)) / 2;
    const k = Math.cos((mid * Math.PI) / 180);
    const xs = lons.map((l) => l * k);
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...lats), y1 = Math.max(...lats);
    const span = Math.max(x1 - x0, (y1 - y0) * ((w - 2 * margin) / (h - 2 * margin)), 0.003);
    const scale = (w - 2 * margin) / span;
    const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
    return {
      x: (p) => w / 2 + (p.lon * k - cx) * scale,
      y: (p) => h / 2 - (p.lat - cy) * scale,
      metres: (px) => (px / scale) * 111320, // a degree of latitude
    };
  }

  function draw(rows, corridors) {
    const map = document.getElementById("map");
    const w = +map.getAttribute("width"), h = +map.getAttribute("height");
    const located = rows.filter((s) => s.location !== null);
    map.replaceChildren(svg("rect", { x: 0, y: 0, width: w, height: h, fill: "#eef2f5" }));
    map.dataset.markers = String(located.length);
    const unlocated = rows.filter((s) => s.location === null).map((s) => s.id);
    document.getElementById("unlocated").textContent = unlocated.length
      ? `Not on the map (no location in their controller file): ${unlocated.join(", ")}`
      : "";
    if (!located.length) {
      map.append(svg("text", { x: w / 2, y: h / 2, "text-anchor": "middle" }, "No intersection has a location."));
      return;
    }
    const p = projection(located.map((s) => s.location), w, h, 70);
    const at = new Map(located.map((s) => [s.id, s.location]));
    for (const c of corridors) {
      const points = c.members.filter((m) => at.has(m.id)).map((m) => at.get(m.id));
      if (points.length < 2) continue;
      const line = svg("polyline", {
        class: "corridor-line", points: points.map((l) => `${p.x(l)},${p.y(l)}`).join(" "),
        fill: "none", stroke: "#36c", "stroke-width": 6, "stroke-opacity": 0.45, "stroke-linecap": "round",
      }, svg("title", {}, `${c.name}: time-space diagram`));
      const last = points[points.length - 1];
      const lx = p.x(last), anchor = lx > w / 2 ? { x: lx - 12, "text-anchor": "end" } : { x: lx + 12 };
      map.append(svg("a", { href: `/c/${c.number}` }, line,
        svg("text", { ...anchor, y: p.y(last) + 22, fill: "#36c" }, `${c.name} →`)));
    }
    for (const s of located) {
      const [state, colour] = stateOf(s);
      const x = p.x(s.location), y = p.y(s.location);
      const tip = `${s.name}: ${s.unit}, ${s.mode || "—"}${s.alarms.length ? "; " + s.alarms.join("; ") : ""}`;
      map.append(svg("a", { href: `/i/${encodeURIComponent(s.id)}`, class: "marker-link" },
        svg("circle", { class: "marker", "data-id": s.id, "data-state": state, cx: x, cy: y, r: 9,
          fill: colour, stroke: "#222", "stroke-width": 1.5 }, svg("title", {}, tip)),
        // Labels on the right half go left of their marker, to stay in view.
        svg("text", x > w / 2 ? { x: x - 12, y: y + 4, fill: "#222", "text-anchor": "end" }
          : { x: x + 12, y: y + 4, fill: "#222" }, s.name)));
    }
    // A scale bar and the legend.
    const metres = [50, 100, 200, 500, 1000, 2000, 5000, 10000].find((m) => m / p.metres(1) > 80) || 10000;
    const bar = metres / p.metres(1);
    map.append(svg("line", { x1: 20, y1: h - 20, x2: 20 + bar, y2: h - 20, stroke: "#222", "stroke-width": 3 }),
      svg("text", { x: 20, y: h - 28 }, metres >= 1000 ? `${metres / 1000} km` : `${metres} m`));
    let lx = 20;
    for (const [name, colour] of STATES) {
      map.append(svg("circle", { cx: lx, cy: 16, r: 6, fill: colour, stroke: "#222" }),
        svg("text", { x: lx + 10, y: 20 }, name === "other" ? "starting / all red" : name));
      lx += name === "other" ? 140 : 80;
    }
  }

  function listCorridors(corridors) {
    const list = document.getElementById("corridors");
    list.replaceChildren(...corridors.map((c) => {
      const hops = c.members.map((m) => m.id).join(" → ");
      const hidden = c.hidden ? ` (and ${c.hidden} outside your token's scope)` : "";
      return html("li", {}, html("a", { href: `/c/${c.number}` }, c.name), `: ${hops}${hidden}, travel ${c.travel_s.map((t) => `${t} s`).join(", ") || "—"}`);
    }));
    if (!corridors.length) list.replaceChildren(html("li", { class: "muted" }, "none configured ([[corridor]] in greenwave.toml)"));
  }

  let corridors = [];
  async function refresh() {
    try {
      draw(await fetchJSON("/api/intersections"), corridors);
    } catch (e) {
      document.getElementById("unlocated").textContent = String(e);
    }
  }

  (async () => {
    try {
      corridors = await fetchJSON("/api/corridors");
      listCorridors(corridors);
    } catch (e) {
      document.getElementById("corridors").replaceChildren(html("li", { class: "alarm" }, String(e)));
    }
    await refresh();
    // The list page refreshes every 2 s; so does the map's colouring.
    setInterval(refresh, 2000);
  })();
})();
