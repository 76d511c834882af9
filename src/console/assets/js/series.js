// Time windows and the time series behind the charts, with empty periods
// filled with zeros (never skipped).

import { get, getOptional, qs } from "./api.js";

export const WINDOW_SECONDS = { "15m": 900, "1h": 3600, "24h": 86400, "7d": 604800, "30d": 2592000 };
export const WINDOW_LABEL = { "15m": "last 15 minutes", "1h": "last hour", "24h": "last 24 hours", "7d": "last 7 days", "30d": "last 30 days" };

export function windowRange(win) {
  const to = new Date();
  const from = new Date(to.getTime() - WINDOW_SECONDS[win] * 1000);
  return { from: from.toISOString(), to: to.toISOString() };
}

/** Every UTC day (YYYY-MM-DD) that overlaps [from, to). */
export function daysBetween(fromIso, toIso) {
  const days = [];
  const d = new Date(fromIso.slice(0, 10) + "T00:00:00Z");
  const end = new Date(toIso);
  while (d < end) {
    days.push(d.toISOString().slice(0, 10));
    d.setUTCDate(d.getUTCDate() + 1);
  }
  return days;
}

/** [unix seconds of each day, values] with a zero for every day missing from `rows`. */
export function fillDays(days, rows, dayOf, valueOf) {
  const by = new Map();
  for (const r of rows) by.set(dayOf(r), (by.get(dayOf(r)) || 0) + valueOf(r));
  return [days.map((d) => Date.parse(d + "T00:00:00Z") / 1000), days.map((d) => by.get(d) || 0)];
}

/**
 * Requests, errors and latency over the window, one point per step:
 * { stepSeconds, source, xs, requests, rps, errorRate, p50, p95, p99 }.
 *
 * Served by `GET /api/monitoring/timeseries` (zero-filled on the server).
 * When the service does not have that endpoint, whole days are taken from
 * the analytics summary (zero-filled here, no percentiles), and shorter
 * windows answer null.
 */
export async function requestSeries(win, { method, route } = {}) {
  const ts = await getOptional("/api/monitoring/timeseries" + qs({ window: win, method, route }));
  if (ts) {
    const pts = ts.points;
    return {
      stepSeconds: ts.stepSeconds,
      source: ts.source,
      xs: pts.map((p) => Date.parse(p.at) / 1000),
      requests: pts.map((p) => p.requests),
      rps: pts.map((p) => p.requests / ts.stepSeconds),
      errorRate: pts.map((p) => (p.requests ? p.serverErrors / p.requests : 0)),
      p50: pts.map((p) => (p.requests ? p.p50Ms : null)),
      p95: pts.map((p) => (p.requests ? p.p95Ms : null)),
      p99: pts.map((p) => (p.requests ? p.p99Ms : null)),
    };
  }
  if (route || WINDOW_SECONDS[win] < 7 * 86400) return null;
  const range = windowRange(win);
  const summary = await get("/api/analytics/summary" + qs(range));
  return dailyFromSummary(summary);
}

export function dailyFromSummary(summary) {
  const days = daysBetween(summary.from, summary.to);
  const perDay = summary.requests.perDay;
  const [xs, requests] = fillDays(days, perDay, (r) => r.day, (r) => r.requests);
  const [, errors] = fillDays(days, perDay, (r) => r.day, (r) => r.serverErrors);
  return {
    stepSeconds: 86400,
    source: "analytics (daily)",
    xs,
    requests,
    rps: requests.map((n) => n / 86400),
    errorRate: requests.map((n, i) => (n ? errors[i] / n : 0)),
    p50: null,
    p95: null,
    p99: null,
  };
}
