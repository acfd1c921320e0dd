// Inline SVG charts drawn at the container's pixel width: a 24 h line and 30 daily bars.

import { day, hourLabel, kwh, num, watts } from "./core.js";

const MARGIN = { left: 40, right: 6, top: 8, bottom: 18 };
// Each drawn point covers at least this many pixels: 1440 minutes on a phone are ~150 points.
const PX_PER_POINT = 2;
const TICK_HOURS = 6;

/** The smallest 1, 2, 2.5 or 5 × 10^k at or above `value`. */
export function niceCeil(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

/** Average `values` into `count` buckets; a bucket with no reading is null (a gap, not 0). */
export function buckets(values, count) {
  const out = [];
  const n = values.length;
  for (let b = 0; b < count; b += 1) {
    let sum = 0;
    let seen = 0;
    for (let i = Math.floor((b * n) / count); i < Math.floor(((b + 1) * n) / count); i += 1) {
      if (typeof values[i] === "number" && Number.isFinite(values[i])) {
        sum += values[i];
        seen += 1;
      }
    }
    out.push(seen ? sum / seen : null);
  }
  return out;
}

/** The last 24 h of power: one line, gaps shaded as "no reading". */
export function lineChart({ values, startMs, stepS, width, height = 130, label }) {
  const plotW = Math.max(40, width - MARGIN.left - MARGIN.right);
  const plotH = height - MARGIN.top - MARGIN.bottom;
  const count = Math.max(1, Math.min(values.length, Math.floor(plotW / PX_PER_POINT)));
  const points = buckets(values, count);
  const readings = values.filter((v) => typeof v === "number" && Number.isFinite(v));
  const top = niceCeil(Math.max(0, ...readings));
  const x = (b) => MARGIN.left + ((b + 0.5) * plotW) / count;
  const y = (v) => MARGIN.top + plotH * (1 - Math.max(0, v) / top);
  const base = MARGIN.top + plotH;

  const line = [];
  const area = [];
  const gaps = [];
  let run = [];
  let gapStart = null;
  const flush = () => {
    if (!run.length) return;
    line.push(run.map(([px, py], i) => `${i ? "L" : "M"}${px.toFixed(1)},${py.toFixed(1)}`).join(""));
    area.push(`M${run[0][0].toFixed(1)},${base}${run.map(([px, py]) => `L${px.toFixed(1)},${py.toFixed(1)}`).join("")}`
      + `L${run[run.length - 1][0].toFixed(1)},${base}Z`);
    run = [];
  };
  points.forEach((v, b) => {
    if (v === null) {
      flush();
      if (gapStart === null) gapStart = b;
    } else {
      if (gapStart !== null) gaps.push([gapStart, b]);
      gapStart = null;
      run.push([x(b), y(v)]);
    }
  });
  flush();
  if (gapStart !== null) gaps.push([gapStart, count]);

  const chart = svg("svg", {
    class: "chart line", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": lineSummary(label, readings, values, stepS),
  });
  chart.append(...yGrid(top, plotW, plotH));
  for (const [from, to] of gaps) {
    const gx = MARGIN.left + (from * plotW) / count;
    chart.append(svg("rect", { class: "gap", x: gx.toFixed(1), y: MARGIN.top,
      width: (((to - from) * plotW) / count).toFixed(1), height: plotH }));
  }
  for (const d of area) chart.append(svg("path", { class: "area", d }));
  for (const d of line) chart.append(svg("path", { class: "stroke", d }));
  chart.append(...hourTicks(startMs, values.length * stepS * 1000, plotW, base, height));
  return chart;
}

/** A tick and its hour every TICK_HOURS along a time axis `spanMs` long from `startMs`. */
function hourTicks(startMs, spanMs, plotW, base, height, { end = true } = {}) {
  const out = [];
  const first = new Date(startMs);
  first.setMinutes(0, 0, 0);
  for (let t = first.getTime(); end ? t <= startMs + spanMs : t < startMs + spanMs; t += 3600 * 1000) {
    if (t < startMs || new Date(t).getHours() % TICK_HOURS !== 0) continue;
    const tx = MARGIN.left + ((t - startMs) / spanMs) * plotW;
    out.push(svg("line", { class: "tick", x1: tx, x2: tx, y1: base, y2: base + 4 }),
      svg("text", { class: "label", x: tx, y: height - 3, "text-anchor": "middle" }, hourLabel(t)));
  }
  return out;
}

const isNumber = (v) => typeof v === "number" && Number.isFinite(v);

/**
 * Series on one axis of `count` slots of `stepS` from `startMs` (a day's 15-min slots):
 * kind "line" (a gap where a value is null), "area" (filled to 0) or "bars" (up or down
 * from 0, each with a <title>). The scale spans 0 and every value (or up to `max`); `nowMs`
 * draws a marker.
 */
export function slotChart({ series, startMs, stepS, count, width, height = 130, label, format, nowMs = null, max = null }) {
  const plotW = Math.max(40, width - MARGIN.left - MARGIN.right);
  const plotH = height - MARGIN.top - MARGIN.bottom;
  const all = series.flatMap((s) => s.values.filter(isNumber));
  const top = max ?? niceCeil(Math.max(0, ...all));
  const low = Math.min(0, ...all);
  const bottom = low < 0 ? -niceCeil(-low) : 0;
  const slot = plotW / Math.max(1, count);
  const x = (i) => MARGIN.left + (i + 0.5) * slot;
  const y = (v) => MARGIN.top + (plotH * (top - v)) / (top - bottom);
  const zero = y(0);
  const chart = svg("svg", {
    class: "chart slots", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label,
  });
  for (const v of new Set([bottom, 0, top])) {
    chart.append(svg("line", { class: "grid", x1: MARGIN.left, x2: MARGIN.left + plotW, y1: y(v), y2: y(v) }));
    if (v !== 0 || bottom < 0) {
      chart.append(svg("text", { class: "label", x: MARGIN.left - 4, y: y(v) + 4, "text-anchor": "end" },
        v === 0 ? "0" : `${v < 0 ? "−" : ""}${compact(Math.abs(v))}`));
    }
  }
  for (const s of series) {
    const cls = `series ${s.cls}`;
    if (s.kind === "bars") {
      const gap = slot > 4 ? 1 : 0;
      s.values.forEach((v, i) => {
        if (!isNumber(v) || v === 0) return;
        const top_ = Math.min(y(v), zero);
        chart.append(svg("rect", {
          class: `${cls} ${v > 0 ? "up" : "down"}`, x: (MARGIN.left + i * slot + gap / 2).toFixed(1), y: top_.toFixed(1),
          width: Math.max(0.5, slot - gap).toFixed(1), height: Math.max(0.5, Math.abs(y(v) - zero)).toFixed(1),
        }, svg("title", {}, `${hourLabel(startMs + i * stepS * 1000)}: ${s.label} ${format(v)}`)));
      });
      continue;
    }
    const runs = [];
    let run = [];
    s.values.forEach((v, i) => {
      if (isNumber(v)) run.push([x(i), y(v)]);
      else if (run.length) runs.push(run.splice(0));
    });
    if (run.length) runs.push(run);
    for (const r of runs) {
      const d = r.map(([px, py], i) => `${i ? "L" : "M"}${px.toFixed(1)},${py.toFixed(1)}`).join("");
      if (s.kind === "area") {
        chart.append(svg("path", { class: `${cls} area`, d: `M${r[0][0].toFixed(1)},${zero.toFixed(1)}${d.replace(/^M/, "L")}`
          + `L${r[r.length - 1][0].toFixed(1)},${zero.toFixed(1)}Z` }));
      }
      chart.append(svg("path", { class: `${cls} stroke`, d }));
    }
  }
  const spanMs = count * stepS * 1000;
  if (nowMs !== null && nowMs >= startMs && nowMs <= startMs + spanMs) {
    const nx = (MARGIN.left + ((nowMs - startMs) / spanMs) * plotW).toFixed(1);
    chart.append(svg("line", { class: "now", x1: nx, x2: nx, y1: MARGIN.top, y2: MARGIN.top + plotH }));
  }
  chart.append(...hourTicks(startMs, spanMs, plotW, MARGIN.top + plotH, height, { end: false }));
  return chart;
}

/** Thirty days of energy, oldest first; a day without a figure is marked, not drawn as 0. */
export function barChart({ days, width, height = 100, label, key = "kwh", format = kwh }) {
  const plotW = Math.max(40, width - MARGIN.left - MARGIN.right);
  const plotH = height - MARGIN.top - MARGIN.bottom;
  const known = days.map((d) => d[key]).filter(isNumber);
  const top = niceCeil(Math.max(0, ...known));
  const slot = plotW / Math.max(1, days.length);
  const gap = slot > 6 ? 2 : 1;
  const chart = svg("svg", {
    class: "chart bars", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `${label}: ${days.length} days, ${known.length ? `total ${format(known.reduce((a, b) => a + b, 0))}, highest ${format(Math.max(...known))}` : "no figures"}`,
  });
  chart.append(...yGrid(top, plotW, plotH));
  const base = MARGIN.top + plotH;
  days.forEach((d, i) => {
    const bx = MARGIN.left + i * slot + gap / 2;
    const when = localDate(d.date);
    const value = d[key];
    const title = svg("title", {}, `${day(when)}: ${isNumber(value) ? format(value) : "no figure"}`);
    if (!isNumber(value)) {
      chart.append(svg("rect", { class: "bar missing", x: bx.toFixed(1), y: base - 2, width: (slot - gap).toFixed(1), height: 2 }, title));
      return;
    }
    const bh = Math.max(1, (plotH * Math.max(0, value)) / top);
    // Below zero (a day that lost money): a thin mark at the base, its figure in the title.
    chart.append(svg("rect", {
      class: `bar${i === days.length - 1 ? " today" : ""}${value < 0 ? " negative" : ""}`, x: bx.toFixed(1), y: (base - bh).toFixed(1),
      width: (slot - gap).toFixed(1), height: bh.toFixed(1),
    }, title));
  });
  if (days.length) {
    chart.append(
      svg("text", { class: "label", x: MARGIN.left, y: height - 3, "text-anchor": "start" }, day(localDate(days[0].date))),
      svg("text", { class: "label", x: MARGIN.left + plotW, y: height - 3, "text-anchor": "end" }, "today"),
    );
  }
  return chart;
}

/** Grid lines at 0, ½ and the top; the unit is in the chart's caption. */
function yGrid(top, plotW, plotH) {
  const out = [];
  for (const f of [0, 0.5, 1]) {
    const gy = MARGIN.top + plotH * (1 - f);
    out.push(svg("line", { class: "grid", x1: MARGIN.left, x2: MARGIN.left + plotW, y1: gy, y2: gy }));
    if (f > 0) {
      out.push(svg("text", { class: "label", x: MARGIN.left - 4, y: gy + 4, "text-anchor": "end" }, compact(top * f)));
    }
  }
  return out;
}

function compact(value) {
  if (value >= 10) return num(value, 0);
  if (value >= 1) return num(value, Number.isInteger(value) ? 0 : 1);
  return num(value, 2);
}

function lineSummary(label, readings, values, stepS) {
  if (!readings.length) return `${label}: no readings in the last 24 h`;
  const missing = values.length - readings.length;
  const mean = readings.reduce((a, b) => a + b, 0) / readings.length;
  return `${label}: last 24 h, peak ${watts(Math.max(...readings))}, average ${watts(mean)}`
    + (missing ? `, ${num((missing * stepS) / 60)} min without a reading` : "");
}

/** "2026-01-15" as local midnight (a date has no time zone). */
export function localDate(text) {
  const [y, m, d] = String(text).split("-").map(Number);
  return new Date(y, (m || 1) - 1, d || 1).getTime();
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value !== null && value !== undefined) el.setAttribute(key, String(value));
  }
  for (const child of children) el.append(child);
  return el;
}
