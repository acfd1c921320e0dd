// The compact "Energy" card (energy.json): today's cost, what doing nothing would have cost,
// the realised saving so far, and the plan's forecast against what it realised. View-only.

import { facts, fill, h } from "./cards.js";
import { kwh } from "./core.js";

const eur = (v) => (typeof v === "number" ? `${v.toFixed(2)} EUR` : null);

export function renderEnergy(body, doc) {
  const today = doc.today?.totals ?? {};
  const slots = Array.isArray(doc.today?.slots) ? doc.today.slots : [];
  const audited = slots.filter((s) => s.complete && typeof s.saving_eur === "number").length;
  const plan = doc.plan;
  const saving = today.saving_eur;
  fill(body,
    h("p", { class: "headline" }, typeof saving === "number"
      ? h("span", { "data-field": "saving" }, `${saving >= 0 ? "saved" : "lost"} ${eur(Math.abs(saving))} today`)
      : h("span", { "data-field": "saving", class: "muted" }, "no priced plan today")),
    facts([
      ["Cost today", eur(today.cost_eur), "cost"],
      ["Doing nothing", eur(today.baseline_cost_eur), "baseline"],
      ["Grid", typeof today.import_kwh === "number" ? `${kwh(today.import_kwh)} in, ${kwh(today.export_kwh)} out` : null, "grid"],
      ["Self-sufficiency", typeof today.self_sufficiency === "number" ? `${Math.round(today.self_sufficiency * 100)} %` : null, "self"],
      ["Plan", plan ? `forecast ${eur(plan.forecast_saving_eur) ?? "—"}, realised ${eur(plan.realised_saving_eur) ?? "—"} (${plan.audited_slots} of ${plan.slots} slots)` : null, "plan"],
      ["Slots audited", `${audited} of ${slots.length} today`, "slots"],
    ]));
}
