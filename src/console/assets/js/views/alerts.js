// Alerts: what fires now, the recent history and the thresholds in force.

import { get } from "../api.js";
import { badge, card, empty, facts, fmtBytes, fmtDuration, fmtMs, fmtNum, fmtPct, h, kpi, mount, table, when } from "../dom.js";

const FORMAT = {
  error_rate: fmtPct,
  job_failure_rate: fmtPct,
  p95_latency: fmtMs,
  queue_age: fmtDuration,
  free_disk: fmtBytes,
  log_drops: fmtNum,
};
const fmtFor = (rule) => FORMAT[rule] || fmtNum;

export default {
  title: "Alerts",
  usesWindow: false,
  async render(el, ctx) {
    const a = await get("/api/monitoring/alerts");
    ctx.poll(15000);
    const th = a.thresholds;
    mount(el,
      a.firing.length
        ? h("div.grid.kpis", a.firing.map((f) => kpi(f.rule, fmtFor(f.rule)(f.lastValue), `threshold ${fmtFor(f.rule)(f.threshold)} · since ${new Date(f.firedAt).toLocaleString()}`, "bad")))
        : card("Firing", empty("No alert is firing.")),
      card(["History", h("span.muted", "most recent first")],
        table([
          { key: "status", title: "Status", render: (x) => badge(x.status, x.status) },
          { key: "rule", title: "Rule", render: (x) => h("span.mono", x.rule) },
          { key: "message", title: "Message", wrap: true },
          { key: "value", title: "Value at firing", num: true, render: (x) => fmtFor(x.rule)(x.value) },
          { key: "lastValue", title: "Last value", num: true, render: (x) => fmtFor(x.rule)(x.lastValue) },
          { key: "threshold", title: "Threshold", num: true, render: (x) => fmtFor(x.rule)(x.threshold) },
          { key: "firedAt", title: "Fired", render: (x) => when(x.firedAt) },
          { key: "resolvedAt", title: "Resolved", render: (x) => (x.resolvedAt ? when(x.resolvedAt) : "–") },
        ], a.recent, { sortKey: "firedAt", empty: "No alert has fired yet." })),
      card("Thresholds",
        facts([
          ["Error rate (5xx)", fmtPct(th.errorRate)],
          ["p95 latency", fmtMs(th.p95Ms)],
          ["Job failure rate", fmtPct(th.jobFailureRate)],
          ["Oldest queued job", fmtDuration(th.queueAgeSeconds)],
          ["Free disk at least", fmtBytes(th.minFreeDiskBytes)],
          ["Request-log drops", fmtNum(th.logDrops)],
          ["Evaluated every", fmtDuration(th.intervalSeconds)],
        ])),
    );
  },
};
