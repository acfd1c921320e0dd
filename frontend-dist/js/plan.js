// The host's full views of energy.json: the Plan (today's slots, planned against actual)
// and the History (30 days). Host mode only; the Pi's page keeps the compact Energy card.

import { barChart, localDate, slotChart } from "./chart.js";
import { facts, fill, h, since } from "./cards.js";
import { clock, duration, kwh, parseTime, percent, watts } from "./core.js";

const eur = (v) => (typeof v === "number" ? `${v < 0 ? "−" : ""}${Math.abs(v).toFixed(2)} EUR` : "—");
const cents = (v) => `${(v * 100).toFixed(1)} ct/kWh`;
const pct = (v) => percent(v, 0);
const signedW = (v) => `${v < 0 ? "−" : ""}${watts(Math.abs(v))}`;
const DAY_SLOTS = 96;
// The agent's control routes answer loopback clients only; this page does not move a battery.
const OVERRIDE_NOTE = "Buttons are off on purpose: the host agent takes overrides only from the host "
  + "itself. On the host run: edgepair host control override MODE --until TIME --config FILE "
  + "(or edgepair host control replan).";
const OVERRIDE_MODES = ["auto", "hold", "charge", "discharge", "safe"];

const CHART_WIDTH_MIN = 240;
// The History's charts go two a row from this body width (style.css .history-charts).
const HISTORY_TWO_UP_PX = 640;
const HISTORY_GAP_PX = 10;

function slotSeries(slots, pick) {
  return slots.map((s) => {
    const v = pick(s);
    return typeof v === "number" && Number.isFinite(v) ? v : null;
  });
}

/** Today: prices, PV and load forecast, planned battery power, planned and actual SoC. */
export function renderPlan(body, doc, ctx) {
  const slots = Array.isArray(doc.today?.slots) ? doc.today.slots.filter((s) => s && typeof s === "object") : [];
  const plan = doc.plan;
  const control = ctx.other("control");
  const width = Math.max(CHART_WIDTH_MIN, ctx.width || 0);
  const startMs = localDate(doc.today?.date);
  const stepS = doc.slot_s || 900;
  const count = Math.round((86400 / stepS) || DAY_SLOTS);
  // The day's grid: slot i of energy.json lands where its start falls.
  const grid = new Array(count).fill(null);
  for (const s of slots) {
    const i = Math.round((parseTime(s.start) - startMs) / (stepS * 1000));
    if (i >= 0 && i < count) grid[i] = s;
  }
  const planned = (key) => slotSeries(grid, (s) => s?.planned?.[key]);
  const chart = (title, caption, options) => h("figure", { class: "plan-chart", "data-chart": title },
    h("figcaption", {}, caption), slotChart({ startMs, stepS, count, width, nowMs: ctx.now, ...options }));
  const priced = grid.filter((s) => s?.planned).length;
  const actualSoc = slotSeries(grid, (s) => s?.actual?.soc_pct);
  const lastSoc = actualSoc.filter((v) => v !== null).pop();
  const audited = slots.filter((s) => s.complete && typeof s.saving_eur === "number");
  const validFrom = parseTime(plan?.valid_from);
  const validUntil = parseTime(plan?.valid_until);
  fill(body,
    h("p", { class: "headline", "data-field": "plan-saving" }, plan
      ? `expected ${eur(plan.forecast_saving_eur)} · realised ${eur(plan.realised_saving_eur)} so far`
      : "no plan yet"),
    facts([
      ["Plan", plan ? `${plan.id} #${plan.seq}` : "none", "plan-id"],
      ["Planner's run", validFrom ? h("span", {}, `plan from ${clock(validFrom, ctx.now)} (`, since(validFrom, ctx.now), ")") : null, "planner-run"],
      ["Valid", validUntil ? `until ${clock(validUntil, ctx.now)}${validUntil > ctx.now ? ` (${duration((validUntil - ctx.now) / 1000)} left)` : " (expired)"}` : null, "valid"],
      ["Audited", plan ? `${plan.audited_slots} of ${plan.slots} slots of this plan; ${audited.length} slots today` : `${audited.length} slots today`, "audited"],
      ["Input files", inputAges(ctx), "inputs"],
    ]),
    priced ? [
      chart("prices", "Prices (ct/kWh): import, export", {
        label: `Prices today: import ${rangeWords(planned("import_eur_kwh"), cents)}, export ${rangeWords(planned("export_eur_kwh"), cents)}`,
        format: cents,
        series: [
          { kind: "line", cls: "import", label: "import", values: planned("import_eur_kwh").map((v) => (v === null ? null : v * 100)) },
          { kind: "line", cls: "export", label: "export", values: planned("export_eur_kwh").map((v) => (v === null ? null : v * 100)) },
        ],
      }),
      chart("power", "Forecast (W): PV, load baseline; planned battery (up charges, down discharges)", {
        label: `Power today: PV forecast peak ${watts(Math.max(0, ...planned("pv_w").filter((v) => v !== null)))}, `
          + `load baseline ${rangeWords(planned("load_w"), watts)}, planned battery ${rangeWords(planned("battery_w"), signedW)}`,
        format: signedW,
        series: [
          { kind: "bars", cls: "battery", label: "planned battery", values: planned("battery_w") },
          { kind: "area", cls: "pv", label: "PV forecast", values: planned("pv_w") },
          { kind: "line", cls: "load", label: "load baseline", values: planned("load_w") },
        ],
      }),
      chart("soc", "Battery SoC (%): planned, actual", {
        label: `Battery SoC today: planned ${rangeWords(planned("soc_pct"), pct)}, actual ${lastSoc === undefined ? "no reading yet" : `${pct(lastSoc)} now`}`,
        format: pct,
        max: 100,
        series: [
          { kind: "line", cls: "planned-soc", label: "planned", values: planned("soc_pct") },
          { kind: "line", cls: "actual-soc", label: "actual", values: actualSoc },
        ],
      }),
      legend(),
      slotTable(grid, ctx.now),
    ] : h("p", { class: "muted", "data-field": "no-slots" }, "No planned slot today yet."),
    overridePart(control, ctx.now));
}

function rangeWords(values, format) {
  const known = values.filter((v) => v !== null);
  if (!known.length) return "none";
  const lo = Math.min(...known);
  const hi = Math.max(...known);
  return lo === hi ? format(lo) : `${format(lo)} to ${format(hi)}`;
}

function legend() {
  const item = (cls, words) => h("li", {}, h("span", { class: `swatch ${cls}`, "aria-hidden": "true" }), words);
  return h("ul", { class: "legend", "aria-label": "Legend" },
    item("import", "import price"), item("export", "export price"), item("pv", "PV forecast"),
    item("load", "load baseline"), item("battery", "planned battery"),
    item("planned-soc", "planned SoC"), item("actual-soc", "actual SoC"));
}

/** The numbers behind the charts, for a screen reader or a close look. */
function slotTable(grid, nowMs) {
  const rows = grid.filter((s) => s?.planned);
  const num2 = (v, f) => (typeof v === "number" ? f(v) : "—");
  return h("details", { class: "slot-table" },
    h("summary", {}, `Slot by slot (${rows.length})`),
    h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ...["Slot", "Import", "PV", "Load", "Battery", "SoC plan", "SoC", "Saving"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, ...rows.map((s) => h("tr", { "data-slot": s.start },
        h("th", { scope: "row" }, clock(parseTime(s.start), nowMs)),
        h("td", {}, num2(s.planned.import_eur_kwh, (v) => (v * 100).toFixed(1))),
        h("td", {}, num2(s.planned.pv_w, watts)), h("td", {}, num2(s.planned.load_w, watts)),
        h("td", {}, num2(s.planned.battery_w, signedW)), h("td", {}, num2(s.planned.soc_pct, pct)),
        h("td", {}, num2(s.actual?.soc_pct, pct)), h("td", {}, num2(s.saving_eur, eur))))))));
}

/** How old the plan's inputs are: energy.json and control.json as this page has them. */
function inputAges(ctx) {
  const parts = [];
  for (const name of ["energy", "control"]) {
    const at = parseTime(ctx.other(name)?.generated_at);
    if (at) parts.push(h("span", { "data-input": name }, `${name}.json `, since(at, ctx.now)));
  }
  return parts.length ? parts.flatMap((p, i) => (i ? [", ", p] : [p])) : null;
}

/** The override in force (control.json) and the buttons, off: see OVERRIDE_NOTE. */
function overridePart(control, nowMs) {
  const o = control?.override;
  const until = parseTime(o?.until);
  const words = o && typeof o === "object"
    ? `${o.mode}${typeof o.power_w === "number" ? ` at ${watts(o.power_w)}` : ""}`
      + `${typeof o.target_soc === "number" ? ` to ${pct(o.target_soc)}` : ""}`
      + `${until ? ` until ${clock(until, nowMs)}` : ""}${o.source ? ` (by ${o.source})` : ""}`
    : control ? "none: following the plan" : "unknown (no control.json)";
  return h("div", { class: "override", "data-part": "override" },
    h("h3", {}, "Manual override"),
    h("p", { "data-field": "override" }, words),
    h("div", { class: "buttons", role: "group", "aria-label": "Override (off on this page)" },
      ...OVERRIDE_MODES.map((m) => h("button", { type: "button", class: "button", disabled: true, "aria-describedby": "override-note" }, m)),
      h("button", { type: "button", class: "button", disabled: true, "aria-describedby": "override-note" }, "replan now")),
    h("p", { class: "muted note", id: "override-note" }, OVERRIDE_NOTE));
}

const HISTORY_CHARTS = [
  ["saving", "Saving against doing nothing (EUR)", "saving_eur", eur],
  ["cost", "Cost (EUR)", "cost_eur", eur],
  ["self", "Self-sufficiency (%)", "self_pct", pct],
  ["import", "Grid import (kWh)", "import_kwh", kwh],
  ["export", "Grid export (kWh)", "export_kwh", kwh],
];

/** 30 days: cost, saving, self-sufficiency, grid import and export; a day without figures is marked. */
export function renderHistory(body, doc, ctx) {
  const rows = Array.isArray(doc.days) ? doc.days.filter((d) => d && typeof d === "object") : [];
  const days = lastDays(rows, doc.today?.date).map((d) => ({
    ...d, self_pct: typeof d.self_sufficiency === "number" ? d.self_sufficiency * 100 : null,
  }));
  const width = Math.max(CHART_WIDTH_MIN, ctx.width || 0);
  const sum = (key) => days.reduce((a, d) => a + (typeof d[key] === "number" ? d[key] : 0), 0);
  const counted = days.filter((d) => typeof d.saving_eur === "number").length;
  const imp = sum("import_kwh");
  const load = sum("load_kwh");
  fill(body,
    h("p", { class: "headline", "data-field": "history-saving" }, `saved ${eur(sum("saving_eur"))} in ${counted} days`),
    facts([
      ["Cost", `${eur(sum("cost_eur"))} (doing nothing: ${eur(sum("baseline_cost_eur"))})`, "cost"],
      ["Grid", `${kwh(imp)} in, ${kwh(sum("export_kwh"))} out`, "grid"],
      ["Self-sufficiency", load > 0 ? pct(Math.max(0, 1 - imp / load) * 100) : null, "self"],
    ]),
    h("div", { class: "history-charts" }, ...HISTORY_CHARTS.map(([name, caption, key, format]) => h("figure", { class: "plan-chart", "data-chart": name },
      h("figcaption", {}, caption),
      barChart({ days, width: width >= HISTORY_TWO_UP_PX ? Math.floor((width - HISTORY_GAP_PX) / 2) : width, height: 90, label: caption, key, format })))));
}

/** The 30 days ending today, oldest first; a date with no row is a day without figures. */
function lastDays(rows, todayText) {
  const byDate = new Map(rows.map((d) => [d.date, d]));
  const end = todayText ? localDate(todayText) : localDate(rows[rows.length - 1]?.date);
  const out = [];
  for (let i = 29; i >= 0; i -= 1) {
    const when = new Date(end);
    when.setDate(when.getDate() - i);
    const text = `${when.getFullYear()}-${String(when.getMonth() + 1).padStart(2, "0")}-${String(when.getDate()).padStart(2, "0")}`;
    out.push(byDate.get(text) ?? { date: text });
  }
  return out;
}
