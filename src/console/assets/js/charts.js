// Charts drawn with the vendored uPlot (global `uPlot`, loaded before the
// modules). Each chart element records what it drew in data attributes
// (data-chart, data-points, data-sum) so that tests and people can check a
// chart shows the data behind it.

import { h, fmtNum } from "./dom.js";

const palette = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];
const live = new Set();
/** Charts made but not yet in the document: drawn once they are. */
let pending = [];

/** Draw every chart whose element is now in the document. */
export function drawCharts() {
  const waiting = pending;
  pending = [];
  for (const [el, draw] of waiting) {
    if (el.isConnected) draw();
    else pending.push([el, draw]);
  }
}

function later(el, draw) {
  pending.push([el, draw]);
  queueMicrotask(drawCharts);
}

const resizer = new ResizeObserver((entries) => {
  for (const e of entries) {
    const u = e.target._uplot;
    const w = Math.floor(e.contentRect.width);
    if (u && w > 0 && Math.abs(u.width - w) > 2) u.setSize({ width: w, height: u.height });
  }
});

/** Destroy every chart (before a view is redrawn). */
export function destroyCharts() {
  for (const u of live) {
    if (u.root.parentElement) resizer.unobserve(u.root.parentElement);
    u.destroy();
  }
  live.clear();
}

function describe(el, name, xs, ys) {
  el.dataset.chart = name;
  el.dataset.points = String(xs.length);
  el.dataset.sum = String(ys.reduce((a, b) => a + (b || 0), 0));
}

function place(el, opts, data) {
  for (const old of live) {
    if (!old.root.isConnected) {
      live.delete(old);
      old.destroy();
    }
  }
  const width = Math.max(280, Math.floor(el.clientWidth || el.parentElement?.clientWidth || 600));
  const u = new uPlot({ ...opts, width }, data, el);
  el._uplot = u;
  live.add(u);
  resizer.observe(el);
  return u;
}

/**
 * A time series chart. xs: Unix seconds (or seconds from a start, with
 * `relative`); series: [{label, values, color, fmt}]. fmt formats the axis
 * and legend values.
 */
export function timeChart(name, xs, series, { height = 220, fmt = fmtNum, stepped = false, fill = false, relative = false } = {}) {
  const el = h("div.chart");
  describe(el, name, xs, series[0]?.values || []);
  later(el, () => {
    place(el, {
      height,
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: !relative }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [
        relative
          ? { stroke: "#667085", grid: { stroke: "#eef1f5" }, incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600], values: (u, vals) => vals.map((v) => `${v} s`) }
          : { stroke: "#667085", grid: { stroke: "#eef1f5" } },
        { stroke: "#667085", grid: { stroke: "#eef1f5" }, size: 84, values: (u, vals) => vals.map((v) => fmt(v)) },
      ],
      series: [
        { value: (u, v) => (v == null ? "–" : relative ? `${v} s` : new Date(v * 1000).toISOString().replace("T", " ").slice(0, 16) + " UTC") },
        ...series.map((s, i) => ({
          label: s.label,
          stroke: s.color || palette[i % palette.length],
          width: 1.5,
          fill: fill && i === 0 ? (s.color || palette[i % palette.length]) + "22" : undefined,
          paths: stepped ? uPlot.paths.stepped({ align: 1 }) : undefined,
          points: { show: xs.length < 40 },
          value: (u, v) => (v == null ? "–" : (s.fmt || fmt)(v)),
        })),
      ],
    }, [xs, ...series.map((s) => s.values)]);
  });
  return el;
}

/**
 * A bar chart over a numeric or categorical x axis. labels: bar labels
 * (strings), values: heights.
 */
export function barChart(name, labels, values, { height = 220, label = "count", color = palette[0], fmt = fmtNum } = {}) {
  const el = h("div.chart");
  const xs = labels.map((_, i) => i);
  describe(el, name, xs, values);
  later(el, () => {
    place(el, {
      height,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: false, range: () => [-0.5, labels.length - 0.5] }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [
        { stroke: "#667085", grid: { show: false }, splits: () => xs, values: (u, vals) => vals.map((v) => labels[v] ?? ""), rotate: 0 },
        { stroke: "#667085", grid: { stroke: "#eef1f5" }, size: 84, values: (u, vals) => vals.map((v) => fmt(v)) },
      ],
      series: [
        { value: (u, v) => (v == null ? "–" : labels[v] ?? "") },
        { label, stroke: color, fill: color + "aa", width: 1, paths: uPlot.paths.bars({ size: [0.8, 80] }), points: { show: false }, value: (u, v) => (v == null ? "–" : fmt(v)) },
      ],
    }, [xs, values]);
  });
  return el;
}
