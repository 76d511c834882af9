// Errors: groups seen in the window (kind, location, count, first and last
// seen) and, for the selected group, its recent occurrences over time.

import { get, qs } from "../api.js";
import { timeChart } from "../charts.js";
import { badge, card, empty, facts, fmtNum, h, json, mount, table, when } from "../dom.js";
import { WINDOW_LABEL, WINDOW_SECONDS, windowRange } from "../series.js";

export default {
  title: "Errors",
  usesWindow: true,
  async render(el, ctx, params) {
    const win = ctx.window;
    const { from } = windowRange(win);
    const kind = params.kind || "";
    const page = await get("/api/monitoring/errors" + qs({ since: from, kind, limit: 200 }));
    const groups = page.items;
    const detail = h("div");
    const chosen = groups.find((g) => g.fingerprint === params.fingerprint) || groups[0];
    const open = async (g) => {
      const full = await get("/api/monitoring/errors" + qs({ fingerprint: g.fingerprint }));
      const group = full.items?.[0] || g;
      mount(detail, groupDetail(group, win));
    };
    if (chosen) await open(chosen);
    const kinds = [...new Set(groups.map((g) => g.kind))];
    const filter = h("select", { name: "kind", onchange: (ev) => { location.hash = "#/errors" + qs({ kind: ev.target.value }); } },
      h("option", { value: "" }, "all kinds"),
      [...new Set([...kinds, "http_500", "panic", "job", "upstream", kind].filter(Boolean))].map((k) => h("option", { value: k, selected: k === kind }, k)));
    mount(el,
      card(["Error groups", h("span.muted", `${groups.length} groups seen in the ${WINDOW_LABEL[win]}`)],
        h("div.toolbar", h("label", "Kind", filter)),
        table([
          { key: "kind", title: "Kind", render: (g) => badge(g.kind, "bad") },
          { key: "location", title: "Where", render: (g) => h("span.mono", g.location) },
          { key: "message", title: "Latest message", wrap: true },
          { key: "count", title: "Occurrences", num: true },
          { key: "firstSeen", title: "First seen", render: (g) => when(g.firstSeen) },
          { key: "lastSeen", title: "Last seen", render: (g) => when(g.lastSeen) },
        ], groups, {
          sortKey: "lastSeen",
          empty: `No errors in the ${WINDOW_LABEL[win]}.`,
          selected: (g) => chosen && g.fingerprint === chosen.fingerprint,
          onSelect: (g, tr) => {
            tr.parentElement.querySelectorAll("tr").forEach((x) => x.classList.remove("selected"));
            tr.classList.add("selected");
            open(g);
          },
        })),
      detail,
    );
  },
};

function groupDetail(g, win) {
  const events = g.events || [];
  return h("div.grid.two",
    card([h("span.mono", g.location), badge(g.kind, "bad")],
      facts([
        ["Occurrences", fmtNum(g.count)],
        ["First seen", when(g.firstSeen)],
        ["Last seen", when(g.lastSeen)],
        ["Last request id", g.lastRequestId ? h("span.mono", g.lastRequestId) : "–"],
        ["Fingerprint", h("span.mono", g.fingerprint)],
        ["Latest message", g.message],
      ]),
      h("h3", "Last context"), json(g.lastContext)),
    card(["Recent occurrences", h("span.muted", `${events.length} kept`)],
      events.length ? occurrenceChart(events, win) : null,
      table([
        { key: "at", title: "At", render: (e) => when(e.at) },
        { key: "message", title: "Message", wrap: true },
        { key: "requestId", title: "Request id", render: (e) => (e.requestId ? h("span.mono", e.requestId) : "–") },
      ], events, { sortKey: "at", empty: "No occurrence kept." })),
  );
}

/** Occurrences per period over the window, zero-filled (from the kept events). */
function occurrenceChart(events, win) {
  const span = WINDOW_SECONDS[win];
  const step = span <= 3600 ? 60 : span <= 86400 ? 900 : span <= 7 * 86400 ? 3600 : 86400;
  const end = Math.ceil(Date.now() / 1000 / step) * step;
  const start = end - Math.ceil(span / step) * step;
  const xs = [];
  for (let t = start; t < end; t += step) xs.push(t);
  const counts = xs.map(() => 0);
  for (const e of events) {
    const i = Math.floor((Date.parse(e.at) / 1000 - start) / step);
    if (i >= 0 && i < counts.length) counts[i] += 1;
  }
  return timeChart("error-occurrences", xs, [{ label: "occurrences", values: counts, color: "#dc2626" }], { height: 160, stepped: true });
}
