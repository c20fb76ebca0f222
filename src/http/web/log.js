// Greenwave web view: the event log page (docs/web.md). Uses web.js's
// helpers (el, getJSON); the server filters, this draws the table.
"use strict";

async function loadLog(id) {
  const status = document.getElementById("log-status");
  const q = new URLSearchParams();
  const to = document.getElementById("to").value;
  // Without an end, the intersection's latest state (the engine's time, the log's).
  const end = to ? new Date(to).getTime() : await getJSON(`/api/state/${encodeURIComponent(id)}`).then((s) => s.at_unix_ms, () => null);
  if (end !== null) {
    q.set("to", String(end));
    q.set("from", String(Math.max(0, end - +document.getElementById("window").value)));
  }
  for (const key of ["codes", "param"]) {
    const v = document.getElementById(key).value.replace(/\s+/g, "");
    if (v) q.set(key, v);
  }
  status.textContent = "reading the event log…";
  try {
    const log = await getJSON(`/api/log/${encodeURIComponent(id)}?${q}`);
    document.querySelector("#log tbody").replaceChildren(...log.rows.map((r) =>
      el("tr", { "data-code": r.code, "data-param": r.param },
        el("td", { title: new Date(r.at_unix_ms).toISOString() }, r.time), el("td", {}, String(r.code)),
        el("td", {}, r.name), el("td", {}, String(r.param)))));
    status.textContent = `${log.rows.length} events, newest first${log.truncated ? " (truncated: oldest missing)" : ""}, `
      + `${new Date(log.from_unix_ms).toLocaleString()} to ${new Date(log.to_unix_ms).toLocaleString()}`;
  } catch (e) {
    status.textContent = String(e);
  }
}

async function eventsPage() {
  const id = decodeURIComponent(location.pathname.split("/")[2]);
  document.getElementById("back").href = `/i/${encodeURIComponent(id)}`;
  document.getElementById("title").textContent = id;
  document.title = `Greenwave: ${id} event log`;
  const codes = await getJSON("/api/event-codes");
  const categories = [...new Set(codes.map((c) => c.category))];
  const select = document.getElementById("category");
  select.append(...categories.map((c) => el("option", { value: c }, c)));
  // A category fills the codes field with its codes; the field can then be edited.
  select.onchange = () => {
    document.getElementById("codes").value =
      codes.filter((c) => c.category === select.value).map((c) => c.code).join(",");
  };
  document.getElementById("codes").title = codes.map((c) => `${c.code} ${c.name}`).join("\n");
  document.getElementById("filter").onsubmit = (e) => { e.preventDefault(); loadLog(id); };
  getJSON(`/api/intersection/${encodeURIComponent(id)}`)
    .then((l) => { document.getElementById("title").textContent = `${l.id}: ${l.name}`; })
    .catch(() => {});
  await loadLog(id);
}

if (document.body.dataset.page === "events") {
  eventsPage().catch((e) => { document.getElementById("log-status").textContent = String(e); });
}
