// Overview: traffic, errors and latency over the chosen window, active
// users, jobs by status, storage, AI tokens per day and firing alerts.

import { get, getOptional, qs } from "../api.js";
import { barChart, timeChart } from "../charts.js";
import { badge, bars, card, empty, fmtBytes, fmtMs, fmtNum, fmtPct, h, kpi, mount, table, when } from "../dom.js";
import { WINDOW_LABEL, daysBetween, fillDays, requestSeries, windowRange } from "../series.js";

export default {
  title: "Overview",
  usesWindow: true,
  async render(el, ctx) {
    const win = ctx.window;
    const range = windowRange(win);
    const [perf, series, summary, alerts, system, storage] = await Promise.all([
      get("/api/monitoring/performance" + qs({ window: win })),
      requestSeries(win),
      get("/api/analytics/summary" + qs(range)),
      get("/api/monitoring/alerts"),
      get("/api/monitoring/system"),
      getOptional("/api/analytics/storage" + qs({ limit: 10 })),
    ]);
    ctx.poll(win === "15m" || win === "1h" ? 15000 : 60000);
    const t = perf.totals;
    const firing = alerts.firing;

    const jobsByStatus = new Map();
    for (const j of summary.jobs.byKindAndStatus) jobsByStatus.set(j.status, (jobsByStatus.get(j.status) || 0) + j.count);

    mount(el,
      h("div.grid.kpis",
        kpi("Requests", fmtNum(t.requests), `${fmtNum(t.requestsPerSecond)} req/s, ${WINDOW_LABEL[win]}`),
        kpi("Error rate", fmtPct(t.errorRate), `${fmtNum(t.serverErrors)} server error${t.serverErrors === 1 ? "" : "s"}`, t.errorRate > 0.01 ? "bad" : null),
        kpi("p95 latency", fmtMs(t.p95Ms), `p50 ${fmtMs(t.p50Ms)} · p99 ${fmtMs(t.p99Ms)}`),
        kpi("Active users", fmtNum(summary.users.activeInRange), `${fmtNum(summary.sessions.active)} live sessions · ${fmtNum(summary.users.total)} accounts`),
        kpi("Jobs waiting", fmtNum(system.queueDepth), `${fmtNum(system.runningJobs)} running`),
        kpi("Firing alerts", fmtNum(firing.length), firing.length ? firing.map((a) => a.rule).join(", ") : "all quiet", firing.length ? "bad" : "ok"),
      ),
      trafficCharts(series, win),
      h("div.grid.three",
        card(["Jobs by status", h("span.muted", "created in the window")], jobStatus(jobsByStatus)),
        card(["Storage", h("span.muted", `${fmtNum(summary.files.storedFiles)} files, ${fmtBytes(summary.files.storedBytes)}`)], storageBars(storage, summary)),
        card(["Firing alerts", h("span.muted", h("a", { href: "#/alerts" }, "all alerts"))], firingList(firing)),
      ),
      h("div.grid.two",
        card(["AI tokens per day", h("span.muted", `${fmtNum(summary.ai.calls)} calls, ${fmtPct(summary.ai.failureRate)} failed`)], aiTokens(summary)),
        card(["Active users per day", h("span.muted", "users with an authenticated request")], activeUsers(summary)),
      ),
    );
  },
};

function trafficCharts(s, win) {
  if (!s) {
    return card("Traffic", empty(`No time series for the ${WINDOW_LABEL[win]}: this service has no GET /api/monitoring/timeseries yet (daily figures from the analytics summary cover 7 d and 30 d).`));
  }
  const step = s.stepSeconds >= 86400 ? "per day" : s.stepSeconds >= 3600 ? "per hour" : s.stepSeconds >= 60 ? `per ${s.stepSeconds / 60} min` : `per ${s.stepSeconds} s`;
  const latency = s.p95
    ? timeChart("latency", s.xs, [
      { label: "p50", values: s.p50, color: "#16a34a" },
      { label: "p95", values: s.p95, color: "#d97706" },
      { label: "p99", values: s.p99, color: "#dc2626" },
    ], { fmt: fmtMs })
    : empty("Percentiles per period need GET /api/monitoring/timeseries.");
  return h("div.grid.three",
    s.stepSeconds >= 3600
      ? card([`Requests ${step}`, h("span.muted", `from ${s.source}`)], timeChart("rps", s.xs, [{ label: "requests", values: s.requests }], { fill: true }))
      : card(["Requests per second", h("span.muted", `${step}, from ${s.source}`)], timeChart("rps", s.xs, [{ label: "req/s", values: s.rps }], { fill: true })),
    card(["Error rate", h("span.muted", "5xx / requests")], timeChart("error-rate", s.xs, [{ label: "error rate", values: s.errorRate, color: "#dc2626" }], { fmt: fmtPct })),
    card(["Latency", h("span.muted", "p50 / p95 / p99")], latency),
  );
}

function jobStatus(by) {
  const order = ["queued", "running", "succeeded", "failed", "cancelled"];
  const tone = { succeeded: "ok", failed: "bad", running: "warn", queued: "warn" };
  const items = order.map((s) => ({ label: s, value: by.get(s) || 0, tone: tone[s] }));
  const el = bars(items);
  el.dataset.chart = "jobs-by-status";
  el.dataset.sum = String(items.reduce((a, i) => a + i.value, 0));
  return el;
}

function storageBars(storage, summary) {
  if (storage?.items) {
    if (!storage.items.length) return empty("No stored files.");
    const quota = (u) => (storage.userQuotaBytes ? ` · ${fmtPct(u.bytes / storage.userQuotaBytes)} of quota` : "");
    const el = bars(storage.items.map((u) => ({ label: u.email || u.userId, value: u.bytes, text: `${fmtBytes(u.bytes)} · ${fmtNum(u.files)} files${quota(u)}` })));
    el.dataset.chart = "storage-per-user";
    el.dataset.sum = String(storage.items.reduce((a, u) => a + u.bytes, 0));
    return h("div", el,
      h("p.muted.small", `Largest ${storage.items.length} of ${fmtNum(storage.usersWithFiles)} users (quota ${fmtBytes(storage.userQuotaBytes)} each). In all ${fmtBytes(storage.totalBytes)} of ${fmtBytes(storage.quotaBytes)}.`));
  }
  // Without a per-user endpoint: the files created in the window, per kind.
  const kinds = summary.files.byKind;
  return h("div",
    kinds.length ? bars(kinds.map((k) => ({ label: k.kind, value: k.bytes, text: `${fmtBytes(k.bytes)} · ${fmtNum(k.files)}` }))) : empty("No files created in the window."),
    h("p.muted.small", "Per kind of file created in the window. Storage per user needs GET /api/analytics/storage."),
  );
}

function firingList(firing) {
  if (!firing.length) return empty("No alert is firing.");
  return table([
    { key: "rule", title: "Rule", render: (a) => badge(a.rule, "firing") },
    { key: "value", title: "Value", num: true, render: (a) => `${fmtNum(a.lastValue)} / ${fmtNum(a.threshold)}` },
    { key: "firedAt", title: "Since", render: (a) => when(a.firedAt) },
  ], firing);
}

function aiTokens(summary) {
  const days = daysBetween(summary.from, summary.to);
  const rows = summary.ai.byDayAndModel;
  const [xs, input] = fillDays(days, rows, (r) => r.day, (r) => r.inputTokens);
  const [, output] = fillDays(days, rows, (r) => r.day, (r) => r.outputTokens);
  if (days.length <= 2) {
    return barChart("ai-tokens", ["input", "output"], [input.reduce((a, b) => a + b, 0), output.reduce((a, b) => a + b, 0)], { label: "tokens" });
  }
  return timeChart("ai-tokens", xs, [
    { label: "input tokens", values: input, color: "#7c3aed" },
    { label: "output tokens", values: output, color: "#0891b2" },
  ], { stepped: true });
}

function activeUsers(summary) {
  const days = daysBetween(summary.from, summary.to);
  const [xs, active] = fillDays(days, summary.users.activePerDay, (r) => r.day, (r) => r.count);
  const [, fresh] = fillDays(days, summary.users.newPerDay, (r) => r.day, (r) => r.count);
  if (days.length <= 2) {
    return barChart("active-users", ["active", "new"], [summary.users.activeInRange, summary.users.newInRange], { label: "users" });
  }
  return timeChart("active-users", xs, [
    { label: "active", values: active },
    { label: "new", values: fresh, color: "#16a34a" },
  ], { stepped: true });
}
