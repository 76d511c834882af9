// Performance per route: a table sortable by any column (p95 first) and the
// latency of the selected route over the window.

import { get, qs } from "../api.js";
import { timeChart } from "../charts.js";
import { card, empty, fmtMs, fmtNum, fmtPct, h, mount, table } from "../dom.js";
import { WINDOW_LABEL, requestSeries } from "../series.js";

export default {
  title: "Performance",
  usesWindow: true,
  async render(el, ctx, params) {
    const win = ctx.window;
    const perf = await get("/api/monitoring/performance" + qs({ window: win }));
    const routes = perf.routes;
    const key = (r) => `${r.method} ${r.route}`;
    const chosen = routes.find((r) => key(r) === params.route) || routes.slice().sort((a, b) => b.p95Ms - a.p95Ms)[0];
    const chart = h("div");
    const select = async (r) => {
      const s = await requestSeries(win, { method: r.method, route: r.route });
      mount(chart, card([h("span.mono", key(r)), h("span.muted", `latency, ${WINDOW_LABEL[win]}`)],
        s ? timeChart("route-latency", s.xs, [
          { label: "p50", values: s.p50, color: "#16a34a" },
          { label: "p95", values: s.p95, color: "#d97706" },
          { label: "p99", values: s.p99, color: "#dc2626" },
        ], { fmt: fmtMs })
          : h("div", routeFigures(r), empty("A latency chart per route needs GET /api/monitoring/timeseries?route=&method=."))));
    };
    if (chosen) await select(chosen);
    mount(el,
      card(["Routes", h("span.muted", `${routes.length} routes, ${WINDOW_LABEL[win]}, from ${perf.source === "live" ? "live histograms" : "hourly roll-ups"}`)],
        table([
          { key: "method", title: "Method" },
          { key: "route", title: "Route", render: (r) => h("span.mono", r.route) },
          { key: "requests", title: "Requests", num: true },
          { key: "requestsPerSecond", title: "req/s", num: true, render: (r) => fmtNum(r.requestsPerSecond, 2) },
          { key: "errorRate", title: "Errors", num: true, render: (r) => fmtPct(r.errorRate) },
          { key: "p50Ms", title: "p50", num: true, render: (r) => fmtMs(r.p50Ms) },
          { key: "p95Ms", title: "p95", num: true, render: (r) => fmtMs(r.p95Ms) },
          { key: "p99Ms", title: "p99", num: true, render: (r) => fmtMs(r.p99Ms) },
          { key: "maxMs", title: "max", num: true, render: (r) => fmtMs(r.maxMs) },
        ], routes, {
          sortKey: "p95Ms",
          empty: `No requests in the ${WINDOW_LABEL[win]}.`,
          selected: (r) => chosen && key(r) === key(chosen),
          onSelect: (r, tr) => {
            tr.parentElement.querySelectorAll("tr").forEach((x) => x.classList.remove("selected"));
            tr.classList.add("selected");
            select(r);
          },
        })),
      chart,
    );
  },
};

function routeFigures(r) {
  return h("p.muted", `${fmtNum(r.requests)} requests · mean ${fmtMs(r.meanMs)} · p50 ${fmtMs(r.p50Ms)} · p95 ${fmtMs(r.p95Ms)} · p99 ${fmtMs(r.p99Ms)} · max ${fmtMs(r.maxMs)}`);
}
