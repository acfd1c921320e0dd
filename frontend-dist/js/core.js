// Pure helpers: formatting, and the decisions the page makes (is a file fresh, what words
// describe the host, what the Wake button says). No DOM here: the tests import this module
// in the browser and call it directly.

// -- formatting ---------------------------------------------------------------------
// By hand, in the page's language (English, 24 h clock, local time zone): Intl's first use
// costs a fresh page ~30 ms of ICU start-up on a Pi-class CPU, a tenth of the render budget.

/** A number with exactly `digits` decimals and thousands grouped: 29,476 · 3.8; "—" for none. */
export function num(value, digits = 0) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "—";
  const [whole, fraction] = Math.abs(value).toFixed(digits).split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+$)/g, ",");
  const negative = value < 0 && Number(whole + (fraction ?? "")) !== 0;
  return `${negative ? "-" : ""}${grouped}${fraction ? `.${fraction}` : ""}`;
}

export function watts(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "—";
  if (Math.abs(value) >= 1000) return `${num(value / 1000, 2)} kW`;
  return `${num(value, 1)} W`;
}

export function kwh(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "—";
  const digits = Math.abs(value) < 10 ? 2 : Math.abs(value) < 100 ? 1 : 0;
  return `${num(value, digits)} kWh`;
}

export function percent(value, digits = 1) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "—";
  return `${num(value, digits)} %`;
}

const SIZE_UNITS = ["B", "kB", "MB", "GB", "TB", "PB"];

/** Bytes in SI units, as disks are sold: 48.2 MB, 2.6 TB. */
export function bytes(value) {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) return "—";
  let unit = 0;
  let scaled = value;
  while (scaled >= 1000 && unit < SIZE_UNITS.length - 1) {
    scaled /= 1000;
    unit += 1;
  }
  const digits = unit === 0 || scaled >= 100 ? 0 : 1;
  return `${num(scaled, digits)} ${SIZE_UNITS[unit]}`;
}

/** A span of seconds in at most two units: 42 s, 3 min, 1 h 5 min, 2 d 3 h. */
export function duration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 24) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d} d ${h % 24} h` : `${d} d`;
}

/** How long ago (or, for a negative age, how far ahead): "12 s ago", "in 3 min". */
export function ago(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "—";
  if (Math.abs(seconds) < 2) return "just now";
  return seconds > 0 ? `${duration(seconds)} ago` : `in ${duration(-seconds)}`;
}

/** Milliseconds since the epoch from an ISO 8601 string; null when absent or malformed. */
export function parseTime(text) {
  if (typeof text !== "string") return null;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? null : ms;
}

const WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** A local clock time; with the day when it is not today: "14:02", "Tue 24 Nov, 07:00". */
export function clock(ms, nowMs = Date.now()) {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "—";
  const when = new Date(ms);
  if (when.toDateString() === new Date(nowMs).toDateString()) return hourLabel(ms);
  return `${WEEKDAYS[when.getDay()]} ${day(ms)}, ${hourLabel(ms)}`;
}

/** "24 Nov". */
export function day(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "—";
  const when = new Date(ms);
  return `${when.getDate()} ${MONTHS[when.getMonth()]}`;
}

/** "07:00". */
export function hourLabel(ms) {
  const when = new Date(ms);
  return `${String(when.getHours()).padStart(2, "0")}:${String(when.getMinutes()).padStart(2, "0")}`;
}

export function plural(n, one, many = `${one}s`) {
  return `${num(n)} ${n === 1 ? one : many}`;
}

// -- decisions ----------------------------------------------------------------------

/** Why a file that is not there is not there, per card. */
const DAEMON_OF = { power: "power", inbox: "inbox", control: "control", nodes: "node" };

/** Problems with a parsed public file, or null: it must be ours and readable. */
export function problem(name, doc) {
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    return "not a JSON object";
  }
  const schema = `edgepair.${name}/`;
  if (typeof doc.schema !== "string" || !doc.schema.startsWith(schema)) {
    return `unexpected schema ${JSON.stringify(doc.schema ?? null)} (expected ${schema}1)`;
  }
  if (doc.schema !== `${schema}1`) {
    return `written by a newer edgepair (${doc.schema}); this page reads ${schema}1`;
  }
  if (parseTime(doc.generated_at) === null) return "no valid generated_at timestamp";
  const interval = doc.interval_s;
  if (interval !== null && interval !== undefined && !(typeof interval === "number" && interval > 0)) {
    return "interval_s is not a positive number";
  }
  const limit = doc.stale_after_s;
  if (limit !== null && limit !== undefined && !(typeof limit === "number" && limit > 0)) {
    return "stale_after_s is not a positive number";
  }
  return null;
}

/**
 * How old a document is against the clock `nowMs`: age_s, interval_s, stale_after_s and stale
 * (age beyond the stale_after_s its writer put in it: handshake/documents.py has the rule).
 * A file without stale_after_s (written on events) is never stale.
 */
export function freshness(doc, nowMs) {
  const generated = parseTime(doc?.generated_at);
  const interval = typeof doc?.interval_s === "number" && doc.interval_s > 0 ? doc.interval_s : null;
  const limit = typeof doc?.stale_after_s === "number" && doc.stale_after_s > 0 ? doc.stale_after_s : null;
  if (generated === null) return { ageS: null, intervalS: interval, staleAfterS: limit, stale: true };
  const ageS = Math.max(0, (nowMs - generated) / 1000);
  return { ageS, intervalS: interval, staleAfterS: limit, stale: limit !== null && ageS > limit };
}

/** What to say about a file that answered 404: not configured, or not written yet. */
export function absentWords(name, piDoc) {
  const daemon = DAEMON_OF[name];
  const daemons = piDoc && typeof piDoc.daemons === "object" ? piDoc.daemons : null;
  if (name === "pihole") {
    return piDoc?.pihole_configured === true
      ? { key: "no-data", text: "no data yet (waiting for Pi-hole's first summary)" }
      : { key: "not-configured", text: "not configured" };
  }
  if (daemon && daemons && !(daemon in daemons)) {
    return { key: "not-configured", text: "not configured" };
  }
  if (name === "snapshot") {
    return { key: "no-data", text: "no snapshot yet: the host sends one when it goes to sleep" };
  }
  if (name === "received") return { key: "no-data", text: "nothing received yet" };
  if (name === "sent") return { key: "no-data", text: "no snapshot sent yet" };
  return { key: "no-data", text: daemon ? `no data yet (waiting for the ${daemon} daemon)` : "no data yet" };
}

const GOING = { suspend: "going to sleep", shutdown: "shutting down", reboot: "rebooting" };

/**
 * Plain words for the host: online / going to sleep / asleep / waking / not answering — hung
 * or off, as its plug says. `tone` is good, busy, idle or bad.
 */
export function hostView(doc) {
  const state = doc?.state;
  const power = doc?.power ?? null;
  switch (state) {
    case "online":
      return { word: "online", tone: "good", detail: "" };
    case "going_offline":
      return { word: GOING[doc.reason] ?? "going offline", tone: "busy", detail: "" };
    case "offline":
      if (doc.reason === NEVER_SEEN) return { word: "unknown", tone: "idle", detail: neverSeen(doc), known: false };
      return { word: "asleep", tone: "idle", detail: plugDetail(power, "asleep") };
    case "waking":
      return { word: "waking", tone: "busy", detail: "" };
    case "unreachable":
      return { word: "not answering", tone: "bad", detail: plugDetail(power, "unreachable") };
    default:
      return { word: String(state ?? "unknown"), tone: "bad", detail: "" };
  }
}

/** host.json's reason while the Pi has never heard from the host (pi/state.py NEVER_SEEN). */
export const NEVER_SEEN = "never_seen";

/** A host never seen: what the heartbeats (and the plug) say so far, not "asleep since". */
function neverSeen(doc) {
  const beat = doc.last_heartbeat;
  const plug = plugDetail(doc.power, "asleep");
  const said = !beat ? "no heartbeat yet" : beat.ok ? "first heartbeats answered" : "no answer to heartbeats yet";
  return plug ? `${said}, ${plug}` : said;
}

/** What the host's plug says about a host that does not answer (or sleeps). */
export function plugDetail(power, state) {
  if (!power || typeof power !== "object") {
    return state === "unreachable" ? "hung or off: no plug measures the host" : "";
  }
  const w = typeof power.watts === "number" ? ` (${watts(power.watts)})` : "";
  if (power.stale || power.state === "unknown") {
    return state === "unreachable" ? "hung or off: its plug has no fresh reading" : "";
  }
  if (power.state === "hung") return `hung: its plug still draws working power${w}`;
  if (power.state === "off") return `off: its plug draws next to nothing${w}`;
  if (power.state === "drawing") {
    return state === "unreachable" ? `hung: its plug still draws working power${w}`
      : `but its plug draws working power${w}`;
  }
  return "";
}

/**
 * The Wake button and its message, from the wake flow and what host.json says.
 * flow: {phase: idle | sending | queued | sent | done | error, sentAt, bootTimeoutS, message}.
 * host: host.json or null; hostStale: whether it is stale (then its state is not believed).
 * `next` is the flow to continue with when this view ends a step (undefined: keep it).
 */
export function wakeView(flow, host, hostStale, nowMs) {
  const state = hostStale ? null : host?.state;
  const bootTimeoutS = flow.bootTimeoutS ?? host?.boot_timeout_s ?? 180;
  const view = (label, disabled, tone, message, next) => ({ label, disabled, tone, message, next });
  if (flow.phase === "sending") {
    return view("Sending…", true, "busy", "Asking the Pi to wake the host…");
  }
  if (state === "online") {
    if (flow.phase === "sent") {
      const message = `The host is online (woke in ${duration((nowMs - flow.sentAt) / 1000)}).`;
      return view("Host is online", true, "good", message, { phase: "done", message });
    }
    // A failed wake is over once the host is up: its message must not come back later.
    return view("Host is online", true, "good", flow.phase === "done" ? flow.message : "",
      flow.phase === "error" ? { phase: "idle" } : undefined);
  }
  if (flow.phase === "queued" && state === "waking") {
    // The host went down and the Pi woke it as asked: from here on, like any wake.
    const sent = { phase: "sent", sentAt: parseTime(host?.since) ?? nowMs, bootTimeoutS };
    const shown = wakeView(sent, host, hostStale, nowMs);
    return { ...shown, next: shown.next ?? sent };
  }
  if (flow.phase === "queued") return view("Wake host", false, "busy", flow.message);
  if (flow.phase === "sent") {
    const since = parseTime(host?.since);
    const gaveUp = (state === "unreachable" && since !== null && since >= flow.sentAt - 1000)
      || (nowMs - flow.sentAt) / 1000 > bootTimeoutS;
    if (gaveUp) {
      const detail = plugDetail(host?.power, "unreachable");
      const message = `Not answering: the host did not come up within ${duration(bootTimeoutS)} `
        + `of the magic packet${detail ? ` (${detail})` : ""}.`;
      return view("Wake host", false, "bad", message, { phase: "error", message });
    }
    // Stable words per step: screen readers read this out whenever it changes.
    const message = `Magic packet sent at ${clock(flow.sentAt, nowMs)}; `
      + `${state === "waking" ? "the host is waking" : "waiting for the host"} (it has ${duration(bootTimeoutS)} to boot)…`
      + (flow.note ? ` ${flow.note}` : "");
    return view("Wake host", false, "busy", message);
  }
  if (flow.phase === "error") return view("Wake host", false, "bad", flow.message);
  // idle, or done while the host is no longer online: nothing left to say
  return view("Wake host", false, "idle", "", flow.phase === "done" ? { phase: "idle" } : undefined);
}

/** What the Pi's answer to POST /api/v1/wake means for the flow (status, JSON body, Retry-After). */
export function wakeAnswer(status, body, retryAfter, nowMs) {
  const said = body?.error?.message ?? body?.message ?? "";
  if (status === 202 && body?.sent === true) {
    return { phase: "sent", sentAt: nowMs, bootTimeoutS: body.boot_timeout_s ?? null, message: "" };
  }
  if (status === 200 && body?.state === "online") {
    return { phase: "done", message: "The host is already online." };
  }
  if (status === 202 && typeof body?.message === "string") {
    return { phase: "queued", message: `${capital(body.message)}.` };
  }
  if (status === 202) {
    return { phase: "error", message: "The Pi could not send the magic packet (see its log)." };
  }
  if (status === 401) {
    return { phase: "error", message: `The Pi refused: ${said || "wake needs a signed request"}. Use \`edgepair wake\` on a configured machine.` };
  }
  if (status === 429) {
    const wait = Number.parseInt(retryAfter ?? "", 10);
    return { phase: "error", message: `Too many wake requests${Number.isFinite(wait) ? `; try again in ${duration(wait)}` : ""}.` };
  }
  return { phase: "error", message: `Wake failed: HTTP ${status}${said ? ` — ${said}` : ""}.` };
}

function capital(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}

/** Seconds until the next fetch of a file, from what the last fetch found. */
export function pollDelayS(result, { fast = false, absentKey = "no-data", failures = 0, maxS = 300 } = {}) {
  if (fast) return 1;
  if (result.status === "ok") {
    const interval = result.doc?.interval_s;
    if (typeof interval !== "number" || interval <= 0) return Math.min(30, maxS); // written on events
    return Math.min(Math.max(interval, 1), maxS);
  }
  if (result.status === "absent") return absentKey === "not-configured" ? 300 : 10;
  return Math.min(2 ** Math.min(failures, 5) * 2, 60); // unreadable or unreachable: back off
}
