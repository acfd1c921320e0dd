// The "Host usage" card (usage.json): today's timeline, 14 days of hours up, the month's
// savings and the clients whose demand wakes the host most. Inline SVG, no library.

import { facts, fill, h, since } from "./cards.js";
import { localDate, svg } from "./chart.js";
import { day, duration, hourLabel, kwh, num, parseTime, plural } from "./core.js";

const BARS = 14;
const HEIGHT = { timeline: 34, bars: 110 };
const MARGIN = { left: 28, right: 6, top: 6, bottom: 16 };
// Host states as the timeline draws them: up, asleep, on its way (either way), lost, and
// "unknown" before the Pi has ever heard from the host (the ledger's name for it).
const BAND = { online: "up", offline: "asleep", waking: "busy", going_offline: "busy", unreachable: "lost",
  unknown: "unknown" };
const REASON_WORDS = {
  button: "Wake button", api: "API", schedule: "schedule", wake_at: "host's own timer",
  "demand:dns": "DNS demand", "demand:port": "port demand", inbox: "inbox", plan: "energy plan",
};

export function renderUsage(body, doc, ctx) {
  const days = Array.isArray(doc.days) ? doc.days.filter((d) => d && typeof d === "object") : [];
  const today = days[days.length - 1] ?? null;
  const width = Math.max(200, Math.floor(ctx.width));
  const month = doc.month && typeof doc.month === "object" ? doc.month : null;
  const clients = Array.isArray(doc.demand_clients) ? doc.demand_clients.filter((c) => c && c.client) : [];
  const recent = Array.isArray(doc.recent_wakes) ? doc.recent_wakes.filter((w) => w && w.reason) : [];
  fill(body,
    h("p", { class: "headline" },
      h("span", { class: "big", "data-field": "today-online" },
        today ? duration((Number(today.hours_online) || 0) * 3600) : "—"), " online today",
      today ? ` · ${plural(wakeCount(today.wakes), "wake")}` : null),
    h("figure", {}, h("figcaption", {}, "Today: up and asleep"), timeline(doc, width)),
    h("figure", {}, h("figcaption", {}, `Last ${BARS} days, hours up`), hoursChart(days.slice(-BARS), width)),
    facts([
      ["This month", month ? h("span", { "data-field": "month-hours" },
        `${duration((Number(month.hours_online) || 0) * 3600)} online, ${plural(wakeCount(month.wakes), "wake")}`) : "—", "month"],
      ["Host drew", month && typeof month.host_kwh === "number"
        ? h("span", { "data-field": "month-kwh" }, `${kwh(month.host_kwh)} this month`)
        : (doc.host_plug ? "no plug figures yet" : "no plug measures the host"), "month-kwh"],
      ["Saved", month && typeof month.saved_kwh === "number" ? h("span", { "data-field": "month-saved" },
        kwh(month.saved_kwh), typeof month.saved_money === "number"
          ? ` · ${num(month.saved_money, 2)} ${doc.currency ?? ""}`.trimEnd() : null,
        " against an always-on host") : null, "month-saved"],
      ["Woken by", month ? reasonsText(month.wakes) : null, "reasons"],
      ["Last wake", recent.length ? wakeLine(recent[0], ctx.now) : "none recorded", "last-wake"],
    ]),
    clients.length ? h("div", { class: "part" }, h("h3", {}, "Noisiest demand clients"),
      h("ol", { class: "clients" }, ...clients.slice(0, 5).map((c) => h("li", { "data-client": c.client },
        h("span", { class: "path" }, c.client), ` ${plural(Number(c.wakes) || 0, "wake")}`,
        parseTime(c.last) !== null ? [", last ", since(parseTime(c.last), ctx.now)] : null)))) : null);
}

function wakeCount(wakes) {
  if (!wakes || typeof wakes !== "object") return 0;
  return Object.values(wakes).reduce((a, b) => a + (Number(b) || 0), 0);
}

function reasonsText(wakes) {
  if (!wakes || typeof wakes !== "object") return null;
  const parts = Object.entries(wakes).filter(([, n]) => Number(n) > 0)
    .sort((a, b) => b[1] - a[1]).map(([reason, n]) => `${REASON_WORDS[reason] ?? reason} ${num(Number(n))}`);
  return parts.length ? parts.join(" · ") : "nothing";
}

function wakeLine(wake, nowMs) {
  const at = parseTime(wake.at);
  return h("span", {}, REASON_WORDS[wake.reason] ?? String(wake.reason),
    wake.client ? ` (${wake.client})` : null, at !== null ? [", ", since(at, nowMs)] : null);
}

/** Today's state bands across the day (the Pi's day); the rest of the day is left blank. */
function timeline(doc, width) {
  const start = parseTime(doc.today_start);
  const end = parseTime(doc.today_end);
  const bands = Array.isArray(doc.today) ? doc.today.filter((b) => b && typeof b === "object") : [];
  if (start === null || end === null || end <= start) return h("p", { class: "muted" }, "no timeline yet");
  const plotW = Math.max(40, width - MARGIN.left - MARGIN.right);
  const barH = HEIGHT.timeline - MARGIN.top - MARGIN.bottom;
  const x = (ms) => MARGIN.left + (plotW * (Math.min(end, Math.max(start, ms)) - start)) / (end - start);
  let up = 0;
  const chart = svg("svg", { class: "chart timeline", width, height: HEIGHT.timeline,
    viewBox: `0 0 ${width} ${HEIGHT.timeline}`, role: "img" });
  chart.append(svg("rect", { class: "track", x: MARGIN.left, y: MARGIN.top, width: plotW, height: barH }));
  for (const band of bands) {
    const from = parseTime(band.start);
    const to = parseTime(band.end);
    if (from === null || to === null || to <= from) continue;
    const kind = BAND[band.state] ?? "lost";
    if (kind === "up") up += to - from;
    chart.append(svg("rect", {
      class: `band ${kind}`, "data-state": band.state, x: x(from).toFixed(1), y: MARGIN.top,
      width: Math.max(0.5, x(to) - x(from)).toFixed(1), height: barH,
    }, svg("title", {}, `${band.state}: ${hourLabel(from)}–${hourLabel(to)}`)));
  }
  for (let i = 0; i <= 4; i += 1) {
    const t = start + ((end - start) * i) / 4;
    chart.append(svg("text", { class: "label", x: x(t).toFixed(1), y: HEIGHT.timeline - 3,
      "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" }, i === 4 ? "24:00" : hourLabel(t)));
  }
  chart.setAttribute("aria-label", `Today: up ${duration(up / 1000)} in ${plural(bands.filter((b) => b.state === "online").length, "stretch", "stretches")}`);
  return chart;
}

/** Hours online per day; a day the ledger did not cover is marked, not drawn as 0. */
function hoursChart(days, width) {
  const plotW = Math.max(40, width - MARGIN.left - MARGIN.right);
  const plotH = HEIGHT.bars - MARGIN.top - MARGIN.bottom;
  const slot = plotW / Math.max(1, days.length);
  const gap = slot > 6 ? 3 : 1;
  const base = MARGIN.top + plotH;
  const known = days.filter((d) => Number(d.hours_recorded) > 0);
  const total = known.reduce((a, d) => a + (Number(d.hours_online) || 0), 0);
  const chart = svg("svg", { class: "chart bars hours", width, height: HEIGHT.bars,
    viewBox: `0 0 ${width} ${HEIGHT.bars}`, role: "img",
    "aria-label": `Hours up, last ${days.length} days: ${known.length ? `average ${num(total / known.length, 1)} h a day` : "no figures"}` });
  for (const hours of [0, 12, 24]) {
    const gy = base - (plotH * hours) / 24;
    chart.append(svg("line", { class: "grid", x1: MARGIN.left, x2: MARGIN.left + plotW, y1: gy, y2: gy }));
    if (hours) chart.append(svg("text", { class: "label", x: MARGIN.left - 4, y: gy + 4, "text-anchor": "end" }, `${hours} h`));
  }
  days.forEach((d, i) => {
    const bx = MARGIN.left + i * slot + gap / 2;
    const hours = Number(d.hours_online);
    const when = localDate(d.date);
    if (!(Number(d.hours_recorded) > 0) || !Number.isFinite(hours)) {
      chart.append(svg("rect", { class: "bar missing", x: bx.toFixed(1), y: base - 2, width: (slot - gap).toFixed(1), height: 2 },
        svg("title", {}, `${day(when)}: not recorded`)));
      return;
    }
    const bh = Math.max(1, (plotH * Math.min(24, hours)) / 24);
    chart.append(svg("rect", {
      class: i === days.length - 1 ? "bar today" : "bar", "data-date": d.date, x: bx.toFixed(1),
      y: (base - bh).toFixed(1), width: (slot - gap).toFixed(1), height: bh.toFixed(1),
    }, svg("title", {}, `${day(when)}: ${duration(hours * 3600)} up`)));
  });
  if (days.length) {
    chart.append(svg("text", { class: "label", x: MARGIN.left, y: HEIGHT.bars - 3, "text-anchor": "start" }, day(localDate(days[0].date))),
      svg("text", { class: "label", x: MARGIN.left + plotW, y: HEIGHT.bars - 3, "text-anchor": "end" }, "today"));
  }
  return chart;
}
