// The cards: small DOM helpers, then one renderer per card. A renderer fills `body` from
// one checked document; `ctx` has now (ms, the server's clock), stale (the document is not
// live), width (px) and the card's own state.

import { barChart, lineChart } from "./chart.js";
import {
  ago, bytes, clock, duration, hostView, kwh, num, parseTime, percent, plural, watts,
} from "./core.js";

// -- DOM helpers: data is always text, never parsed as HTML -------------------------

/** h("p", {class: "x"}, "text", child…): text is always text, attributes always attributes. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false || child === "") continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace everything inside `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** A definition list from [term, value] pairs; null values are left out. */
export function facts(pairs, attrs = {}) {
  const dl = h("dl", { class: "facts", ...attrs });
  for (const pair of pairs) {
    if (!pair || pair[1] === null || pair[1] === undefined) continue;
    const [term, value, key] = pair;
    dl.append(h("div", { "data-fact": key ?? null }, h("dt", {}, term), h("dd", {}, value)));
  }
  return dl;
}

/** "3 min ago" that the page keeps current as time passes (see main.js, tick). */
export function since(ms, nowMs) {
  return h("time", { datetime: new Date(ms).toISOString(), "data-at": ms }, ago((nowMs - ms) / 1000));
}

/** A small coloured word: <span class="pill tone-good">online</span>. */
export function pill(text, tone, attrs = {}) {
  return h("span", { class: `pill tone-${tone}`, ...attrs }, text);
}

// -- the Pi's files ------------------------------------------------------------------

const PLUG_HEALTH = {
  ok: ["ok", "good"],
  stale: ["no fresh reading", "busy"],
  auth_failed: ["login refused", "bad"],
  unreachable: ["unreachable", "bad"],
};

export function renderPower(body, doc, ctx) {
  // A broken entry hides only itself, not the other plugs.
  const plugs = Array.isArray(doc.plugs) ? doc.plugs.filter((p) => p && typeof p === "object") : [];
  if (!plugs.length) {
    fill(body, h("p", { class: "muted" }, "No plugs configured."));
    return;
  }
  const list = h("div", { class: "plugs" });
  for (const plug of plugs) {
    const [word, tone] = PLUG_HEALTH[plug.health] ?? [String(plug.health), "bad"];
    const seen = parseTime(plug.last_seen);
    list.append(h("div", { class: "plug", "data-plug": plug.name },
      h("p", { class: "plug-head" }, h("strong", {}, plug.name),
        plug.role === "host" ? h("span", { class: "role" }, "host") : null,
        pill(word, tone, { "data-field": "health" })),
      h("p", { class: "live" }, h("span", { class: "big", "data-field": "live" }, watts(plug.live_w)),
        typeof plug.live_w === "number" ? " now" : " no live reading"),
      h("p", { class: "energy" }, "today ", h("b", { "data-field": "today" }, kwh(plug.today_kwh)),
        " · month ", h("b", { "data-field": "month" }, kwh(plug.month_kwh))),
      plug.health !== "ok" ? h("p", { class: "muted small" },
        seen ? ["last reading ", since(seen, ctx.now)] : "never read") : null));
  }
  const state = ctx.state;
  const names = plugs.map((p) => p.name);
  if (!names.includes(state.selected)) {
    state.selected = (plugs.find((p) => p.role === "host") ?? plugs[0]).name;
  }
  const select = h("select", { id: "power-plug" },
    ...names.map((n) => h("option", { value: n, selected: n === state.selected }, n)));
  select.addEventListener("change", () => {
    state.selected = select.value;
    ctx.rerender();
  });
  const plug = plugs.find((p) => p.name === state.selected);
  const width = Math.max(200, Math.floor(ctx.width));
  const series = plug.series_24h;
  const charts = h("div", { class: "charts" },
    h("p", { class: "chart-pick" }, h("label", { for: "power-plug" }, "Charts for "), select),
    h("figure", {}, h("figcaption", {}, "Last 24 h, W"),
      series && Array.isArray(series.w) && parseTime(series.start) !== null
        ? lineChart({ values: series.w, startMs: parseTime(series.start), stepS: series.step_s || 60, width, label: `Power of ${plug.name}` })
        : h("p", { class: "muted" }, "no series yet")),
    h("figure", {}, h("figcaption", {}, "Last 30 days, kWh per day"),
      Array.isArray(plug.daily_kwh) && plug.daily_kwh.length
        ? barChart({ days: plug.daily_kwh, width, label: `Daily energy of ${plug.name}` })
        : h("p", { class: "muted" }, "no daily figures yet")));
  const refocus = document.activeElement?.id === "power-plug";
  fill(body, list, charts);
  if (refocus) select.focus();
}

export function renderInbox(body, doc, ctx) {
  const pending = doc.pending ?? {};
  const oldest = parseTime(pending.oldest);
  const waiting = pending.files
    ? [`${plural(pending.files, "file")}, ${bytes(pending.bytes)}`, oldest ? [" (oldest ", since(oldest, ctx.now), ")"] : null]
    : "nothing";
  const flights = Array.isArray(doc.in_flight) ? doc.in_flight : [];
  const flush = doc.last_flush;
  const error = doc.last_error;
  const wake = doc.wake ?? {};
  const asked = parseTime(wake.last_requested_at);
  const flushAt = parseTime(flush?.at);
  const errorAt = parseTime(error?.at);
  fill(body,
    h("p", { class: "headline" }, h("span", { class: "big", "data-field": "pending" }, waiting), inboxWords(doc)),
    flights.length ? h("ul", { class: "flights" }, ...flights.map((f) => h("li", {},
      h("span", { class: "path" }, f.path), " ",
      h("progress", { max: f.bytes || 1, value: Math.min(f.sent_bytes || 0, f.bytes || 1), "aria-label": `sent of ${f.path}` }),
      ` ${bytes(f.sent_bytes)} of ${bytes(f.bytes)}`))) : null,
    facts([
      ["Last delivery", flush ? h("span", {}, `${plural(flush.files, "file")}, ${bytes(flush.bytes)} in ${duration(flush.duration_s)}`,
        flushAt ? [", ", since(flushAt, ctx.now)] : null) : "none yet", "last-flush"],
      ["Last error", error ? h("span", { class: "tone-text-bad" }, `${error.message}${error.path ? ` (${error.path})` : ""}`,
        errorAt ? [", ", since(errorAt, ctx.now)] : null) : null, "last-error"],
      ["Wakes the host", wake.enabled ? h("span", {}, "when too much or too old waits",
        asked ? ["; last asked ", since(asked, ctx.now)] : null) : "no", "wake"],
    ]));
}

// What the pending files are doing: they wait while the host sleeps, and go once it is online.
function inboxWords(doc) {
  const pending = doc.pending ?? {};
  if (!pending.files) return " waiting";
  if (doc.host_state !== "online") return " waiting for the host";
  return (pending.ready_files ?? 0) < pending.files ? " settling, then on to the host" : " on the way to the host";
}

export function renderPihole(body, doc, ctx) {
  const q = doc.queries ?? {};
  const c = doc.clients ?? {};
  const g = doc.gravity ?? {};
  const updated = parseTime(g.last_update);
  fill(body,
    doc.ok === false ? h("p", { class: "problem", "data-field": "error" }, pill("error", "bad"), " ", doc.error || "Pi-hole cannot be read") : null,
    doc.queries ? h("p", { class: "headline" }, h("span", { class: "big", "data-field": "blocked" }, percent(q.percent_blocked)), " of queries blocked") : null,
    facts([
      ["Queries", doc.queries ? `${num(q.total)} (${num(q.blocked)} blocked)` : null, "queries"],
      ["Clients", doc.clients ? `${num(c.active)} active of ${num(c.total)}` : null, "clients"],
      ["Blocklist", doc.gravity ? h("span", {}, `${num(g.domains_being_blocked)} domains`,
        updated ? [", updated ", since(updated, ctx.now)] : null) : null, "gravity"],
    ]));
}

const SHARE_LABEL = { inbox: "Inbox space", share: "Share space" };

/** pi.json's shares: each SMB folder's free space (low: under 10 % or 1 GB). */
export function shareFacts(shares) {
  if (!shares || typeof shares !== "object" || Array.isArray(shares)) return [];
  return Object.entries(shares).map(([name, s]) => {
    const label = SHARE_LABEL[name] ?? `${name} space`;
    if (!s || typeof s !== "object" || typeof s.free_bytes !== "number" || typeof s.total_bytes !== "number") {
      return [label, h("span", { class: "tone-text-bad" }, `${s?.path ?? name}: ${s?.error ?? "unknown"}`), `share-${name}`];
    }
    const low = s.free_bytes < 1e9 || s.free_bytes < 0.1 * s.total_bytes;
    return [label, h("span", { class: low ? "tone-text-bad" : null },
      `${bytes(s.free_bytes)} free of ${bytes(s.total_bytes)}`), `share-${name}`];
  });
}

/** pi.json's backup: the last good one, or the failure that is news, and the next one. */
export function backupFacts(backup, nowMs) {
  if (!backup || typeof backup !== "object") return [];
  const ok = backup.last_ok;
  const okAt = parseTime(ok?.at);
  const err = backup.last_error;
  const next = parseTime(backup.next_due);
  const parts = [];
  if (backup.running) parts.push("sending now");
  else if (okAt) parts.push(h("span", {}, `${clock(okAt, nowMs)} (`, since(okAt, nowMs), `), ${bytes(ok.bytes)} to the host`));
  else parts.push("none yet");
  if (err?.message) parts.push(h("span", { class: "tone-text-bad" }, `; last try failed: ${err.message}`));
  if (backup.enabled === false) parts.push(" (off)");
  else if (next && !backup.running) parts.push(`; next ${clock(next, nowMs)}`);
  else if (!backup.running) parts.push("; next when the host is online");
  return [["Backup", h("span", {}, ...parts), "backup"]];
}

export function renderPi(body, doc, ctx) {
  const load = Array.isArray(doc.load) ? doc.load : [];
  const memory = doc.memory;
  const disk = doc.disk;
  const temp = doc.temperature_c;
  const tempTone = typeof temp !== "number" ? "idle" : temp >= 80 ? "bad" : temp >= 70 ? "busy" : "good";
  const busy = typeof load[0] === "number" && typeof doc.cpus === "number" && load[0] > doc.cpus;
  const daemons = doc.daemons && typeof doc.daemons === "object" ? Object.entries(doc.daemons) : [];
  fill(body, facts([
    ["Load", load.length ? h("span", { class: busy ? "tone-text-busy" : null },
      `${load.map((l) => num(l, 2)).join(" · ")}${doc.cpus ? ` (${plural(doc.cpus, "CPU")})` : ""}`) : "—", "load"],
    ["Memory", memory ? `${bytes(memory.used_bytes)} of ${bytes(memory.total_bytes)} used (${percent((100 * memory.used_bytes) / memory.total_bytes, 0)})` : "—", "memory"],
    ["Temperature", typeof temp === "number" ? pill(`${num(temp, 1)} °C`, tempTone) : "not available", "temperature"],
    ["Disk", disk ? `${bytes(disk.used_bytes)} of ${bytes(disk.total_bytes)} used (${percent((100 * disk.used_bytes) / disk.total_bytes, 0)})` : "—", "disk"],
    ...shareFacts(doc.shares),
    ...backupFacts(doc.backup, ctx?.now ?? Date.now()),
    ["Up", typeof doc.uptime_s === "number" ? duration(doc.uptime_s) : "—", "uptime"],
    ["Name", doc.hostname ?? "—", "hostname"],
    ["Daemons", daemons.length ? daemons.map(([name, d]) =>
      `${name} ${d?.version ?? ""}${d?.running === false ? " (not running)" : ""}`.trim()).join(", ") : "—", "daemons"],
  ]));
}

const CONTROL_MODE = {
  following: ["following the plan", "good"],
  safe: ["safe state", "busy"],
  safe_unverified: ["safe state NOT verified", "bad"],
};
const BATTERY_MODE = {
  normal: "normal", hold: "hold", charge: "charge", discharge: "discharge",
  limit_export: "self-consumption",
};

/** The plan's expected saving against doing nothing, and why the host fell back, if it did. */
function savingWords(plan) {
  if (!plan || typeof plan.savings_eur !== "number") return null;
  const eur = `${plan.savings_eur.toFixed(2)} EUR`;
  return plan.reason ? `${eur} (${plan.reason})` : eur;
}

export function renderControl(body, doc, ctx) {
  const [word, tone] = CONTROL_MODE[doc.mode] ?? [String(doc.mode), "bad"];
  const plan = doc.plan;
  const slot = doc.slot;
  const rb = doc.readback;
  const alarms = Array.isArray(doc.alarms) ? doc.alarms : [];
  const until = parseTime(plan?.valid_until);
  const loads = slot?.loads && typeof slot.loads === "object" ? Object.entries(slot.loads) : [];
  fill(body,
    // Following needs no explanation (its slot is below); a safe state says why.
    h("p", { class: "headline" }, pill(word, tone, { "data-field": "mode" }),
      doc.mode !== "following" && (doc.detail || doc.reason) ? ` ${doc.detail || doc.reason}` : ""),
    facts([
      ["Plan", plan ? `${plan.id} #${plan.seq}, ${plan.status}${until ? `, ${until > ctx.now ? "valid for" : "expired"} ${duration(Math.abs(until - ctx.now) / 1000)}${until > ctx.now ? "" : " ago"}` : ""}` : "none", "plan"],
      ["Now", slot ? `${clock(parseTime(slot.start), ctx.now)}–${clock(parseTime(slot.end), ctx.now)}: battery ${BATTERY_MODE[slot.battery_mode] ?? slot.battery_mode}`
        + `${typeof slot.power_w === "number" ? ` at ${watts(slot.power_w)}` : ""}${typeof slot.soc_target === "number" ? ` to ${percent(slot.soc_target, 0)}` : ""}`
        + `${typeof slot.export_cap_w === "number" ? `, feed-in ≤ ${watts(slot.export_cap_w)}` : ""}` : null, "slot"],
      ["Expected saving", savingWords(plan), "saving"],
      ["Loads", loads.length ? loads.map(([n, on]) => `${n} ${on ? "on" : "off"}`).join(", ") : null, "loads"],
      ["Device", rb ? deviceWords(rb) : null, "readback"],
      ["Writes today", typeof doc.writes_today === "number" ? `${num(doc.writes_today)} of ${num(doc.write_budget)}` : null, "writes"],
    ]),
    alarms.length ? h("ul", { class: "alarms" }, ...alarms.map((a) => h("li", {}, pill("alarm", "bad"), ` ${a.message ?? a.code}`,
      parseTime(a.since) ? h("span", { class: "muted" }, ` since ${clock(parseTime(a.since), ctx.now)}`) : null))) : null);
}

// Sign conventions of control.json: battery_w > 0 charges the battery, grid_w > 0 imports.
function deviceWords(rb) {
  const parts = [];
  if (typeof rb.soc_pct === "number") parts.push(`battery ${percent(rb.soc_pct, 0)}`);
  if (typeof rb.battery_w === "number") {
    parts.push(rb.battery_w > 0 ? `charging ${watts(rb.battery_w)}` : rb.battery_w < 0 ? `discharging ${watts(-rb.battery_w)}` : "battery idle");
  }
  if (typeof rb.grid_w === "number") {
    parts.push(rb.grid_w > 0 ? `importing ${watts(rb.grid_w)}` : rb.grid_w < 0 ? `exporting ${watts(-rb.grid_w)}` : "grid idle");
  }
  return parts.join(" · ") || "—";
}

// -- the host: host.json, snapshot.json, and the host's own files ---------------------

/** host.json: the state in plain words, since when, DNS, next wake, heartbeat, plug. */
export function renderHost(body, doc, ctx) {
  const view = hostView(doc);
  const stateSince = parseTime(doc.since);
  const dns = doc.dns ?? {};
  const next = doc.next_wake;
  const beat = doc.last_heartbeat;
  const beatAt = parseTime(beat?.at);
  const wake = doc.last_wake;
  const power = doc.power;
  const dnsTarget = dns.target === "host" ? "the host" : dns.target === "pi" ? "the Pi" : dns.target;
  fill(body,
    h("p", { class: "state" },
      // Stale: what the Pi last said, not what the host is doing now.
      pill(ctx.stale ? `last known: ${view.word}` : view.word, ctx.stale ? "idle" : view.tone,
        { "data-field": "host-state", "data-state": doc.state }),
      stateSince && view.known !== false ? h("span", { "data-field": "since" }, ` since ${clock(stateSince, ctx.now)} (`, since(stateSince, ctx.now), ")") : null,
      view.detail ? h("span", { class: "detail", "data-field": "host-detail" }, ` — ${view.detail}`) : null),
    doc.alarm ? h("p", { class: "problem", "data-field": "alarm" }, pill("alarm", "bad"), ` ${doc.alarm.message}`) : null,
    facts([
      ["DNS", h("span", {}, `${dns.name ?? "?"} → ${dns.address ?? "?"} (${dnsTarget ?? "?"})`,
        dns.applied === false ? h("span", { class: "tone-text-bad" }, ` not applied${dns.error ? `: ${dns.error}` : ""}`) : null), "dns"],
      ["Next wake", next ? `${clock(parseTime(next.at), ctx.now)} (${next.source === "schedule" ? "schedule" : "asked by the host"})` : "none scheduled", "next-wake"],
      ["Heartbeat", beat ? heartbeatWords(beat, beatAt, ctx.now) : "not yet", "heartbeat"],
      ["Plug", power ? `${watts(power.watts)}${power.plug ? ` at ${power.plug}` : ""}${power.stale ? " (no fresh reading)" : ""}` : null, "plug"],
      ["Last wake", wake ? `${clock(parseTime(wake.at), ctx.now)}, by ${wake.source}${wake.error ? ` — failed: ${wake.error}` : ""}` : null, "last-wake"],
    ]));
}

function heartbeatWords(beat, atMs, nowMs) {
  const when = atMs ? [", ", since(atMs, nowMs)] : null;
  if (beat.ok) {
    return h("span", {}, `answered${typeof beat.latency_ms === "number" ? ` in ${num(beat.latency_ms, 0)} ms` : ""}`, when);
  }
  return h("span", {}, "no answer", when, beat.error ? h("span", { class: "muted small" }, ` (${beat.error})`) : null);
}

/** The headline of a snapshot: storage used, health, last backup. */
export function snapshotFacts(snapshot, nowMs) {
  if (!snapshot || typeof snapshot !== "object") return facts([["Snapshot", "empty"]]);
  if (snapshot.error) return facts([["Snapshot", `failed on the host: ${snapshot.error}`]]);
  const volumes = (Array.isArray(snapshot.volumes) ? snapshot.volumes : []).filter((v) => v && typeof v === "object" && !v.error);
  const used = volumes.reduce((a, v) => a + (v.used_bytes || 0), 0);
  const total = volumes.reduce((a, v) => a + (v.total_bytes || 0), 0);
  const health = typeof snapshot.health === "string" ? snapshot.health : "unknown";
  const backup = snapshot.backup;
  const last = parseTime(backup?.last_success);
  const failedUnits = (Array.isArray(snapshot.units) ? snapshot.units : []).filter((u) => u?.active_state === "failed");
  return facts([
    ["Storage", total ? h("span", {}, `${bytes(used)} of ${bytes(total)} used (${percent((100 * used) / total, 0)})`,
      h("span", { class: "muted small" }, ` (${volumes.map((v) => `${v.path}: ${percent(v.used_percent, 0)}`).join(", ")})`)) : "—", "storage"],
    ["Health", pill(health, health === "ok" ? "good" : "bad", { "data-field": "health" }), "health"],
    ["Last backup", backup ? (backup.error ? `marker ${backup.marker} ${backup.error}`
      : last ? h("span", {}, `${clock(last, nowMs)} (`, since(last, nowMs), ")") : "never") : "not watched", "backup"],
    ["Failed units", failedUnits.length ? failedUnits.map((u) => u.name).join(", ") : null, "units"],
  ]);
}

/** snapshot.json as a part of the host card (it breaks only itself). */
export function renderSnapshot(part, view, nowMs) {
  const doc = view.doc;
  const taken = parseTime(doc?.snapshot?.taken_at) ?? parseTime(doc?.received_at);
  fill(part,
    h("h3", {}, "Last snapshot",
      taken ? h("span", { class: "age" }, " taken ", since(taken, nowMs), doc.reason ? `, before ${doc.reason}` : "") : null),
    doc ? snapshotFacts(doc.snapshot, nowMs) : h("p", { class: "muted" }, view.text));
}

/** Host mode: what the host's inbox receiver stored (inbox-received.json). */
export function renderReceived(body, doc, ctx) {
  const files = Array.isArray(doc.files) ? doc.files.slice(0, 10) : [];
  fill(body,
    h("p", { class: "headline" }, h("span", { class: "big", "data-field": "total" }, plural(doc.total_files ?? 0, "file")),
      ` (${bytes(doc.total_bytes)}) received in total`),
    files.length ? h("ul", { class: "files" }, ...files.map((f) => h("li", {},
      h("span", { class: "path" }, f.path),
      h("span", { class: "muted small" }, ` ${bytes(f.bytes)}`,
        parseTime(f.received_at) ? [", ", since(parseTime(f.received_at), ctx.now)] : null,
        f.stored_as && f.stored_as !== f.path ? `, kept as ${f.stored_as}` : null)))) : h("p", { class: "muted" }, "nothing yet"));
}

/** Host mode: the snapshot this host last sent to the Pi (snapshot-sent.json). */
export function renderSent(body, doc, ctx) {
  const sent = parseTime(doc.sent_at);
  const wakeAt = parseTime(doc.wake_at);
  fill(body,
    facts([
      ["Sent", sent ? h("span", {}, `${clock(sent, ctx.now)} (`, since(sent, ctx.now), ")") : "—", "sent"],
      ["Reason", doc.reason ?? "—", "reason"],
      ["Wake at", wakeAt ? clock(wakeAt, ctx.now) : null, "wake-at"],
      ["Up before", typeof doc.snapshot?.uptime_s === "number" ? duration(doc.snapshot.uptime_s) : null, "uptime"],
    ]),
    snapshotFacts(doc.snapshot, ctx.now));
}
