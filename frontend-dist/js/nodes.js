// The "Nodes" card (nodes.json): each ESP32 node's state, readings and next job. Hidden
// while there are no nodes (main.js).

import { fill, h, pill, since } from "./cards.js";
import { clock, num, parseTime } from "./core.js";

const STATE = {
  online: ["online", "good"],
  offline: ["offline", "bad"],
  pending: ["waiting for approval", "busy"],
};

/** Whether the card has anything to show: at least one node. */
export function hasNodes(doc) {
  return Array.isArray(doc?.nodes) && doc.nodes.some((n) => n && typeof n === "object");
}

export function renderNodes(body, doc, ctx) {
  const nodes = Array.isArray(doc.nodes) ? doc.nodes.filter((n) => n && typeof n === "object") : [];
  const list = h("ul", { class: "nodes" });
  for (const node of nodes) {
    const [word, tone] = STATE[node.state] ?? [String(node.state), "bad"];
    const seen = parseTime(node.last_seen);
    list.append(h("li", { class: "node", "data-node": node.hwid },
      h("p", { class: "node-head" },
        h("strong", { "data-field": "name" }, node.name ?? node.hwid),
        node.role ? h("span", { class: "role" }, node.role) : null,
        pill(word, tone, { "data-field": "state" })),
      node.state === "pending"
        ? h("p", { class: "muted", "data-field": "approve" },
          `edgepair node approve ${node.hwid} --code CODE --name NAME`)
        : null,
      readings(node.readings),
      nextJob(node.next_job, ctx.now),
      h("p", { class: "muted small" },
        [node.name ? node.hwid : null, Array.isArray(node.capabilities) ? node.capabilities.join(", ") : null]
          .filter(Boolean).join(" · "),
        seen !== null ? [" · seen ", since(seen, ctx.now)] : null)));
  }
  fill(body, list);
}

function readings(values) {
  if (!values || typeof values !== "object") return null;
  const items = Object.entries(values).filter(([, r]) => r && typeof r === "object");
  if (!items.length) return null;
  return h("p", { class: "readings" }, items.map(([name, r], i) => [
    i ? " · " : null,
    h("span", { "data-reading": name }, `${name} `, h("strong", {}, value(r))),
  ]));
}

function value(r) {
  if (typeof r.value === "boolean") return r.value ? "on" : "off";
  if (typeof r.value !== "number") return "—";
  return `${num(r.value, Number.isInteger(r.value) ? 0 : 1)}${r.unit ? ` ${r.unit}` : ""}`;
}

function nextJob(job, nowMs) {
  const due = parseTime(job?.due);
  if (!job || due === null) return null;
  return h("p", { "data-field": "next-job" }, "Next: ", h("strong", {}, String(job.action ?? job.id)),
    ` at ${clock(due, nowMs)}`);
}
