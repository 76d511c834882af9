// Load tests: start one from a form (with a "10 users" preset), watch it
// run, and read its results: latency distribution, per-second timeline,
// status codes and threshold verdicts.

import { ApiError, get, post } from "../api.js";
import { barChart, timeChart } from "../charts.js";
import { badge, bars, card, empty, facts, fmtMs, fmtNum, fmtPct, h, kpi, mount, table, when } from "../dom.js";

// "10 users" means 10 virtual users: 10 throwaway accounts with a session
// each, rate limited as real users unless the exemption is ticked.
const PRESETS = {
  "10 users": { virtualUsers: 10, concurrency: "", durationSeconds: 20, rampUpSeconds: 2, exemptFromRateLimits: false, scenario: "GET /api/users/{userId} 3\nGET /api/jobs?limit=10 1\nGET /health 1", p95Ms: 250, p99Ms: 1000, errorRate: 0.01 },
  "Smoke": { virtualUsers: "", concurrency: 1, durationSeconds: 5, rampUpSeconds: 0, exemptFromRateLimits: true, scenario: "GET /health 1", p95Ms: "", p99Ms: "", errorRate: "" },
  "Spike (50)": { virtualUsers: "", concurrency: 50, durationSeconds: 30, rampUpSeconds: 5, exemptFromRateLimits: true, scenario: "GET /health 1\nGET /api/jobs?limit=10 1", p95Ms: 500, p99Ms: 2000, errorRate: 0.02 },
};

export default {
  title: "Load tests",
  usesWindow: false,
  async render(el, ctx, params) {
    const status = await get("/api/load-test/status");
    const running = status.running;
    ctx.poll(running ? 1000 : 0);
    const chosenId = params.id || (!running && status.recent[0]?.id);
    let result = null;
    if (chosenId) {
      try {
        result = await get(`/api/load-test/results/${encodeURIComponent(chosenId)}`);
      } catch (e) {
        if (!(e instanceof ApiError && e.status === 404)) throw e;
      }
    }
    mount(el,
      h("div.grid.two",
        card("Start a load test", startForm(ctx, !!running)),
        card("Now", running ? progress(running, status) : empty("No load test is running.")),
      ),
      card(["Recent tests", h("span.muted", "newest first")],
        table([
          { key: "status", title: "Status", render: (t) => badge(t.status, t.status) },
          { key: "passed", title: "Verdict", render: (t) => (t.passed == null ? "–" : badge(t.passed ? "passed" : "failed", t.passed ? "passed" : "failed")) },
          { key: "mode", title: "Mode" },
          { key: "concurrency", title: "Workers", num: true },
          { key: "requests", title: "Requests", num: true },
          { key: "achievedRps", title: "req/s", num: true, render: (t) => fmtNum(t.achievedRps, 1) },
          { key: "p50Ms", title: "p50", num: true, render: (t) => fmtMs(t.p50Ms) },
          { key: "p99Ms", title: "p99", num: true, render: (t) => fmtMs(t.p99Ms) },
          { key: "createdAt", title: "Started", render: (t) => when(t.startedAt || t.createdAt) },
        ], status.recent, {
          sortKey: "createdAt",
          empty: "No load test yet.",
          selected: (t) => t.id === chosenId,
          onSelect: (t) => { location.hash = "#/loadtests?id=" + encodeURIComponent(t.id); },
        })),
      result ? results(result) : null,
    );
  },
};

function field(label, name, value, attrs = {}) {
  return h("label", label, h("input", { name, value: value ?? "", ...attrs }));
}

function startForm(ctx, busy) {
  const form = h("form", { id: "loadtest-form", onsubmit: (ev) => submit(ev, ctx) });
  const fill = (p) => {
    for (const [k, v] of Object.entries(p)) {
      const input = form.elements[k];
      if (!input) continue;
      if (input.type === "checkbox") input.checked = !!v;
      else input.value = v;
    }
  };
  const presets = h("div.row-actions", Object.entries(PRESETS).map(([name, p]) => h("button", { type: "button", dataset: { preset: name }, onclick: () => fill(p) }, name)));
  mount(form,
    h("p.muted.small", "Requests go to this service's own routes only. Presets:"), presets,
    h("div.grid.form",
      field("Virtual users (accounts)", "virtualUsers", 10, { type: "number", min: 1, max: 50, placeholder: "as you" }),
      field("Workers (default: one a user)", "concurrency", "", { type: "number", min: 1 }),
      field("or target rate (req/s)", "rate", "", { type: "number", min: 0, step: "any", placeholder: "closed loop" }),
      field("Duration (s)", "durationSeconds", 20, { type: "number", min: 1 }),
      field("Ramp-up (s)", "rampUpSeconds", 2, { type: "number", min: 0 }),
      field("p95 limit (ms)", "p95Ms", 250, { type: "number", min: 0, step: "any" }),
      field("p99 limit (ms)", "p99Ms", 1000, { type: "number", min: 0, step: "any" }),
      field("Error rate limit", "errorRate", 0.01, { type: "number", min: 0, max: 1, step: "any" }),
    ),
    h("label.check", h("input", { type: "checkbox", name: "exemptFromRateLimits" }), " Exempt from rate limits (off: each virtual user gets a real user's allowance and 429s show in the status codes)"),
    h("label", "Scenario: one request a line, METHOD PATH [weight]; {userId} is the acting user's id",
      h("textarea", { name: "scenario", rows: 3, class: "mono", value: PRESETS["10 users"].scenario })),
    h("p.error", { id: "loadtest-error", hidden: true }),
    h("button.primary", { type: "submit", disabled: busy }, busy ? "A test is running" : "Start"),
  );
  return form;
}

/** The form as a load-test request; throws with a message on a bad line. */
function request(form) {
  const f = new FormData(form);
  const num = (k) => (String(f.get(k) || "").trim() === "" ? undefined : Number(f.get(k)));
  const scenario = String(f.get("scenario")).split("\n").map((l) => l.trim()).filter(Boolean).map((line) => {
    const [method, path, weight] = line.split(/\s+/);
    if (!method || !path) throw new Error(`"${line}" is not METHOD PATH [weight]`);
    return { method: method.toUpperCase(), path, weight: weight ? Number(weight) : undefined };
  });
  const rate = num("rate");
  const virtualUsers = num("virtualUsers");
  const thresholds = { p95Ms: num("p95Ms"), p99Ms: num("p99Ms"), errorRate: num("errorRate") };
  return {
    scenario,
    virtualUsers,
    exemptFromRateLimits: form.elements.exemptFromRateLimits.checked,
    ...(rate ? { rate, concurrency: num("concurrency") } : { concurrency: num("concurrency") }),
    rampUpSeconds: num("rampUpSeconds"),
    durationSeconds: num("durationSeconds"),
    thresholds: Object.values(thresholds).some((v) => v !== undefined) ? thresholds : undefined,
  };
}

async function submit(ev, ctx) {
  ev.preventDefault();
  const form = ev.target;
  const err = form.querySelector("#loadtest-error");
  err.hidden = true;
  try {
    await post("/api/load-test/start", request(form));
    ctx.notice("Load test started.");
    location.hash = "#/loadtests";
    ctx.refresh();
  } catch (e) {
    const fields = e.problem?.errors?.map((x) => `${x.field}: ${x.message}`).join("; ");
    err.textContent = fields || e.message;
    err.hidden = false;
  }
}

function progress(r, status) {
  const planned = status.recent.find((t) => t.id === r.id);
  return h("div",
    h("p", badge(r.status, "running"), " ", h("span.mono", r.id || "queued")),
    facts([
      ["Elapsed", `${fmtNum(r.elapsedSeconds, 1)} s`],
      ["Requests", fmtNum(r.requests)],
      ["Succeeded", fmtNum(r.succeeded)],
      ["Failed", fmtNum(r.failed)],
      ["Current rate", `${fmtNum(r.currentRps, 1)} req/s`],
      planned ? ["Workers", fmtNum(planned.concurrency)] : null,
    ]));
}

function results(r) {
  const lat = r.latencyMs;
  const pcts = [["min", lat.min], ["p50", lat.p50], ["p75", lat.p75], ["p90", lat.p90], ["p95", lat.p95], ["p99", lat.p99], ["p99.9", lat.p999], ["max", lat.max]];
  const tl = r.timeline || [];
  const xs = tl.map((p) => p.second);
  const codes = Object.entries(r.statusCodes || {});
  return h("div.view",
    h("div.grid.kpis",
      kpi("Requests", fmtNum(r.totals.requests), `${fmtNum(r.totals.failed)} failed`, r.totals.failed > r.totals.requests / 100 ? "bad" : null),
      kpi("Achieved", fmtNum(r.achievedRps, 0), `req/s · ${r.targetRps ? `target ${fmtNum(r.targetRps, 1)}` : `${r.concurrency} workers, ${r.mode}`}${r.virtualUsers ? ` · ${r.virtualUsers} virtual users` : ""}`),
      kpi("p95", fmtMs(lat.p95), `p50 ${fmtMs(lat.p50)} · p99 ${fmtMs(lat.p99)}`),
      kpi("Verdict", r.passed == null ? "–" : r.passed ? "passed" : "failed", r.error || `${fmtNum(r.durationSeconds, 1)} s`, r.passed === false ? "bad" : r.passed ? "ok" : null),
    ),
    h("div.grid.two",
      card(["Latency distribution", h("span.muted", `${fmtNum(lat.count)} successful requests`)],
        r.histogram
          ? barChart("loadtest-histogram", r.histogram.map((b) => "≤" + fmtMs(b.leMs)), r.histogram.map((b) => b.count), { label: "requests" })
          : barChart("loadtest-histogram", pcts.map((p) => p[0]), pcts.map((p) => p[1]), { label: "latency", fmt: fmtMs, color: "#d97706" }),
        r.histogram ? null : h("p.muted.small", "Percentiles only: bucket counts need a `histogram` field in the results.")),
      card(["Timeline", h("span.muted", "per second")],
        tl.length
          ? timeChart("loadtest-timeline", xs, [
            { label: "requests", values: tl.map((p) => p.requests), color: "#2563eb" },
            { label: "errors", values: tl.map((p) => p.errors), color: "#dc2626" },
          ], { height: 160, relative: true })
          : empty("No timeline."),
        tl.length
          ? timeChart("loadtest-timeline-latency", xs, [
            { label: "p50", values: tl.map((p) => p.p50Ms), color: "#16a34a" },
            { label: "p99", values: tl.map((p) => p.p99Ms), color: "#dc2626" },
          ], { height: 160, fmt: fmtMs, relative: true })
          : null),
    ),
    h("div.grid.three",
      card("Status codes", codes.length ? bars(codes.map(([c, n]) => ({ label: c, value: n, tone: c.startsWith("2") ? "ok" : "bad" }))) : empty("No response.")),
      card("Thresholds", table([
        { key: "name", title: "Threshold" },
        { key: "limit", title: "Limit", num: true, render: (t) => (t.name.includes("rror") ? fmtPct(t.limit) : fmtMs(t.limit)) },
        { key: "actual", title: "Actual", num: true, render: (t) => (t.name.includes("rror") ? fmtPct(t.actual) : fmtMs(t.actual)) },
        { key: "passed", title: "", render: (t) => badge(t.passed ? "passed" : "failed", t.passed ? "passed" : "failed") },
      ], r.thresholds || [], { empty: "No thresholds set." })),
      card("Run", facts([
        ["Id", h("span.mono", r.id)],
        ["Started", when(r.startedAt)],
        ["Finished", when(r.finishedAt)],
        ["Errors", `timeout ${r.errors.timeout} · connect ${r.errors.connect} · other ${r.errors.other}`],
        ["Acting as", r.virtualUsers ? `${r.virtualUsers} virtual users` : "the admin who started it"],
        ["Rate limits", r.exemptFromRateLimits ? "exempt" : "applied (429s counted above)"],
        ["Coordinated omission corrected", r.coordinatedOmissionCorrected ? "yes" : "no"],
        ["Mean ± sd", `${fmtMs(lat.mean)} ± ${fmtMs(lat.stddev)}`],
      ])),
    ),
  );
}
