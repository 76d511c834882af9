// System: process and browser memory, CPU, disk, database and WAL, health
// checks, backups (take one, download) and maintenance (preview, run).

import { ApiError, get, post, qs } from "../api.js";
import { badge, bars, card, empty, facts, fmtBytes, fmtDuration, fmtMs, fmtNum, h, kpi, mount, table, when } from "../dom.js";

export default {
  title: "System",
  usesWindow: false,
  async render(el, ctx) {
    const [sys, health, backups, preview] = await Promise.all([
      get("/api/monitoring/system"),
      get("/api/monitoring/health-detailed", { quiet: false }).catch((e) => (e instanceof ApiError && e.status === 503 ? e.problem : Promise.reject(e))),
      get("/api/maintenance/backups" + qs({ limit: 20 })),
      get("/api/performance/optimize"),
    ]);
    // A running backup reports its progress through its job.
    const running = backups.items.filter((b) => b.status === "running" && b.jobId);
    const jobs = new Map(await Promise.all(running.map(async (b) => [b.id, await get(`/api/jobs/${encodeURIComponent(b.jobId)}`).catch(() => null)])));
    ctx.poll(running.length ? 1000 : 10000);
    const used = sys.dataDirTotalBytes && sys.dataDirFreeBytes != null ? sys.dataDirTotalBytes - sys.dataDirFreeBytes : null;
    const browserRss = sys.browserRssBytes;
    mount(el,
      h("div.grid.kpis",
        kpi("Service memory", fmtBytes(sys.rssBytes), `resident · pid ${sys.pid}`),
        browserRss != null
          ? kpi("Browser memory", fmtBytes(browserRss), `${fmtNum(sys.browserProcesses)} Chromium processes`)
          : kpi("Browser", sys.browserProcesses ? `${fmtNum(sys.browserProcesses)} proc.` : "idle", "its memory is not reported yet"),
        kpi("CPU", `${fmtNum(sys.cpuPercent, 1)} %`, `of one core · ${fmtNum(sys.threads)} threads`),
        kpi("Disk free", fmtBytes(sys.dataDirFreeBytes), sys.dataDirTotalBytes ? `of ${fmtBytes(sys.dataDirTotalBytes)}` : null),
        kpi("Database", fmtBytes(sys.databaseBytes), `WAL ${fmtBytes(sys.walBytes)}`),
        kpi("Uptime", fmtDuration(sys.uptimeSeconds), `version ${sys.version}`),
      ),
      h("div.grid.two",
        card(["Health", badge(health.status, health.status)],
          table([
            { key: "name", title: "Check", render: (c) => h("span.mono", c.name) },
            { key: "status", title: "Status", render: (c) => badge(c.status, c.status) },
            { key: "detail", title: "Detail", wrap: true },
            { key: "durationMs", title: "Took", num: true, render: (c) => fmtMs(c.durationMs) },
          ], health.checks || [], { empty: "No checks." })),
        card("Resources",
          used != null ? bars([
            { label: "disk used", value: used, text: fmtBytes(used) },
            { label: "database", value: sys.databaseBytes, text: fmtBytes(sys.databaseBytes) },
            { label: "WAL", value: sys.walBytes, text: fmtBytes(sys.walBytes) },
          ], sys.dataDirTotalBytes) : null,
          facts([
            ["Open files", fmtNum(sys.openFds)],
            ["Job queue", `${fmtNum(sys.queueDepth)} queued, ${fmtNum(sys.runningJobs)} running${sys.oldestQueuedAgeSeconds != null ? `, oldest ${fmtDuration(sys.oldestQueuedAgeSeconds)}` : ""}`],
            ["Request log", `${fmtNum(sys.requestLogWritten)} written, ${fmtNum(sys.requestLogDropped)} dropped`],
            ["Rate-limiter keys", fmtNum(sys.rateLimiterKeys)],
            ["Database readers", `${fmtNum(sys.dbReaderConnections)} open, ${fmtNum(sys.dbReaderIdle)} idle`],
          ])),
      ),
      h("div.grid.two",
        card(["Backups", h("button.primary", { type: "button", id: "backup-now", onclick: (ev) => backupNow(ev, ctx) }, "Back up now")],
          table([
            { key: "status", title: "Status", render: (b) => h("span", { title: `${b.trigger === "admin" ? "taken by an admin" : "scheduled"} · ${b.error || `integrity: ${b.integrity || "not checked"}`}` }, badge(b.status, b.status), b.status === "running" ? backupProgress(jobs.get(b.id)) : null) },
            { key: "createdAt", title: "Taken", render: (b) => when(b.createdAt) },
            { key: "sizeBytes", title: "Size", num: true, render: (b) => fmtBytes(b.sizeBytes) },
            { key: "sha256", title: "SHA-256", sortable: false, render: (b) => (b.sha256 ? h("span.mono", { title: `SHA-256 ${b.sha256}` }, b.sha256.slice(0, 8)) : "–") },
            { key: "id", title: "", sortable: false, render: (b) => (b.status === "succeeded" ? h("a.button", { href: `/api/maintenance/backups/${encodeURIComponent(b.id)}`, download: b.fileName, "data-backup": b.id }, "Download") : null) },
          ], backups.items, { sortKey: "createdAt", empty: "No backup yet." })),
        card(["Maintenance", h("button", { type: "button", id: "run-maintenance", onclick: (ev) => runMaintenance(ev, ctx) }, "Run maintenance now")],
          h("p.muted.small", `What a run would do now (dry run, ${fmtMs(preview.durationMs)}):`),
          maintenanceTable(preview),
          h("div", { id: "maintenance-report" })),
      ),
    );
  },
};

/** A running backup's progress bar, from its job (bytes copied, then the check). */
function backupProgress(job) {
  if (!job?.progress) return null;
  const pct = job.progress.percent;
  return h("div.backup-progress", { "data-percent": String(pct) },
    h("progress", { max: 100, value: pct }),
    h("span.muted.small", `${fmtNum(pct)} %${job.progress.message ? " · " + job.progress.message : ""}`));
}

/** The steps with something to do; the others folded away. */
function maintenanceTable(report) {
  const busy = report.actions.filter((a) => a.count > 0 || a.bytes > 0);
  const idle = report.actions.filter((a) => !(a.count > 0 || a.bytes > 0));
  const rows = (list, msg) => table([
    { key: "name", title: "Step", render: (a) => h("span.mono", a.name) },
    { key: "description", title: "What", wrap: true },
    { key: "count", title: "Count", num: true },
    { key: "bytes", title: "Bytes", num: true, render: (a) => fmtBytes(a.bytes) },
  ], list, { empty: msg });
  return h("div",
    rows(busy, "Nothing to do."),
    idle.length ? h("details", h("summary", `${idle.length} steps with nothing to do`), rows(idle, "")) : null,
    report.failures?.length ? h("p.error", report.failures.map((f) => `${f.domain}: ${f.message}`).join("; ")) : null);
}

async function backupNow(ev, ctx) {
  ev.target.disabled = true;
  try {
    const job = await post("/api/maintenance/backups");
    ctx.notice(`Backup started (job ${job.id}).`);
  } catch (e) {
    ctx.notice(`Backup failed to start: ${e.message}`, true);
  }
  ctx.refresh();
}

async function runMaintenance(ev, ctx) {
  ev.target.disabled = true;
  const out = document.getElementById("maintenance-report");
  try {
    const report = await post("/api/performance/optimize");
    ctx.poll(0);
    mount(out, h("h3", `Done in ${fmtMs(report.durationMs)}: ${fmtNum(report.totals.count)} items, ${fmtBytes(report.totals.bytes)} freed`),
      report.database ? facts([
        ["Database", `${fmtBytes(report.database.sizeBytesBefore)} → ${fmtBytes(report.database.sizeBytesAfter)}`],
        ["WAL", `${fmtBytes(report.database.walBytesBefore)} → ${fmtBytes(report.database.walBytesAfter)}`],
      ]) : null,
      maintenanceTable(report));
    ctx.notice("Maintenance ran.");
  } catch (e) {
    mount(out, empty(`Maintenance failed: ${e.message}`));
  } finally {
    ev.target.disabled = false;
  }
}
