// The dashboard: finds out where it runs (Pi or host), polls the public files, renders cards.

import {
  fill, h, renderControl, renderHost, renderInbox, renderPi, renderPihole, renderPower,
  renderReceived, renderSent, renderSnapshot,
} from "./cards.js";
import {
  absentWords, ago, duration, freshness, pollDelayS, wakeAnswer, wakeView,
} from "./core.js";
import { FETCH_TIMEOUT_MS, Source } from "./source.js";
import { hasNodes, renderNodes } from "./nodes.js";
import { renderEnergy } from "./energy.js";
import { renderHistory, renderPlan } from "./plan.js";
import { renderUsage } from "./usage.js";

const TICK_MS = 1000;
// The first render waits this long at most for every file to answer.
const FIRST_DRAW_WAIT_MS = 500;
const RENDERERS = {
  host: renderHost, power: renderPower, inbox: renderInbox, pihole: renderPihole,
  pi: renderPi, control: renderControl, received: renderReceived, sent: renderSent,
  usage: renderUsage, nodes: renderNodes, energy: renderEnergy, plan: renderPlan, history: renderHistory,
};
const WRITERS = {
  host: "the api daemon", pi: "the api daemon", pihole: "the api daemon", usage: "the api daemon",
  power: "the power daemon", inbox: "the inbox daemon", control: "the control daemon",
  nodes: "the node daemon",
  energy: "the control daemon",
};
// Cards on the Pi's files; host mode adds the host's own.
const PI_CARDS = ["host", "usage", "power", "inbox", "control", "energy", "pihole", "nodes", "pi"];
// Cards shown only while their file has something in it (no ESP32 nodes: no Nodes card).
const SHOWN_IF = { nodes: hasNodes };
// Cards whose charts are drawn at their body's width.
const CHART_CARDS = ["power", "usage", "plan", "history"];
const HOST_CARDS = { received: "inbox-received", sent: "snapshot-sent" };
// Host mode's full views: cards drawn from a Pi file another card already polls.
const HOST_VIEWS = { plan: "energy", history: "energy" };
// A card redrawn when another file changes (the Plan shows control.json's override).
const ALSO_ON = { plan: ["control"] };

const app = {
  mode: "pi",
  sources: new Map(),
  cards: new Map(),
  flow: { phase: "idle" },
  ticker: null,
  complete: false,
  drawn: false,
  drawTimer: null,
  hostState: null,
  snapshotPart: null,
};

async function start() {
  const mode = await detectMode();
  app.mode = mode.mode;
  describeMode(mode);
  for (const name of PI_CARDS) addCard(name);
  const snapshotPart = h("div", { class: "part", "data-part": "snapshot", "data-status": "loading" });
  app.cards.get("host").body.after(snapshotPart);
  app.snapshotPart = snapshotPart;
  addSource("snapshot", `${mode.piBase}snapshot.json`, {});
  for (const name of PI_CARDS) {
    addSource(name, `${mode.piBase}${name}.json`, name === "host" ? { maxS: 5 } : {});
  }
  if (mode.mode === "host") {
    for (const [name, file] of Object.entries(HOST_CARDS)) {
      addCard(name).el.hidden = false;
      addSource(name, `data/${file}.json`, { schema: file === "snapshot-sent" ? "snapshot" : file });
    }
    for (const [name, file] of Object.entries(HOST_VIEWS)) addCard(name, file).el.hidden = false;
  }
  setUpWake(mode);
  watchWidth();
  document.addEventListener("visibilitychange", () => (document.hidden ? pause() : resume()));
  app.drawTimer = setTimeout(drawAll, FIRST_DRAW_WAIT_MS);
  if (!document.hidden) resume();
}

/** The host agent's health carries a boot_id; the Pi's does not. The host says where the Pi is. */
async function detectMode() {
  try {
    // Preloaded by index.html, so this answer is on its way while the modules load.
    const signal = AbortSignal.timeout(FETCH_TIMEOUT_MS);
    const health = await (await fetch("api/v1/health", { signal })).json();
    if (typeof health?.boot_id === "string") {
      const answer = await (await fetch("api/v1/dashboard", { cache: "no-store", signal })).json();
      if (typeof answer?.pi_url === "string") {
        return { mode: "host", piBase: `${answer.pi_url.replace(/\/+$/, "")}/data/` };
      }
    }
  } catch {
    // No API behind this page (nginx serving the files while the api daemon is down): the
    // public files are next to the page, as on the Pi.
  }
  return { mode: "pi", piBase: "data/" };
}

function describeMode(mode) {
  document.documentElement.dataset.mode = mode.mode;
  fill(document.getElementById("mode"), mode.mode === "host" ? "host · full view" : "Pi · view-only");
  if (mode.mode === "host") {
    fill(document.getElementById("foot"), `The Pi's files come from ${mode.piBase}, the host's from this host. `
      + "Refreshes by itself; paused while this tab is hidden.");
  }
}

function addCard(name, source = name) {
  const el = document.getElementById(`card-${name}`);
  const card = {
    name, source, el, body: el.querySelector(".body"), banner: el.querySelector(".banner"),
    age: el.querySelector(".card-head .age"), state: {}, lastStatus: "loading", width: 0,
  };
  app.cards.set(name, card);
  return card;
}

function addSource(name, url, { maxS = 300, schema = name }) {
  const source = new Source(name, url, {
    schema,
    onResult: (src, changed) => onResult(name, src, changed),
    delayS: (src) => pollDelayS(src.result, {
      fast: name === "host" && hostIsMoving(),
      maxS,
      failures: src.result.failures,
      absentKey: absentWords(name, piDoc()).key,
    }),
  });
  app.sources.set(name, source);
}

function onResult(name, source, changed) {
  if (name === "host") {
    const state = source.result.doc?.state ?? null;
    // A state change may come with a new snapshot (going-offline carries one).
    if (app.hostState !== null && state !== app.hostState) app.sources.get("snapshot").poll();
    app.hostState = state;
  }
  if (!app.drawn) {
    if ([...app.sources.values()].every((s) => s.result.status !== "loading")) drawAll();
    return;
  }
  if (name === "snapshot") {
    renderSnapshotPart();
  } else {
    for (const card of app.cards.values()) {
      if (card.source === name ? changed || card.lastStatus === "loading"
        : changed && ALSO_ON[card.name]?.includes(name) && card.lastStatus !== "loading") renderCard(card);
    }
  }
  if (name === "host") updateWake();
  if (name === "pi" && changed) {
    for (const card of app.cards.values()) if (card.lastStatus === "absent") renderCard(card);
  }
  markComplete();
}

/**
 * The first render: every card at once, in one frame, when every file has answered (or
 * FIRST_DRAW_WAIT_MS after start; a slow file's card then follows on its own).
 */
function drawAll() {
  if (app.drawn) return;
  app.drawn = true;
  clearTimeout(app.drawTimer);
  for (const card of app.cards.values()) renderCard(card);
  renderSnapshotPart();
  updateWake();
  markComplete();
}

function piDoc() {
  return app.sources.get("pi")?.result.lastGood ?? null;
}

/** What a card shows for its file right now: status, the document (if any), banner text. */
function viewOf(name, source) {
  const r = source.result;
  if (r.status === "loading") return { status: "loading", doc: null, text: "loading…" };
  if (r.status === "absent") {
    const words = absentWords(name, piDoc());
    return { status: "absent", detail: words.key, doc: null, text: words.text };
  }
  if (r.status === "unreadable") {
    return { status: "unreadable", doc: null, text: "unreadable", banner: `Unreadable: ${r.error}.` };
  }
  const doc = r.status === "ok" ? r.doc : r.lastGood;
  const fresh = doc ? freshness(doc, source.now()) : null;
  if (r.status === "unreachable") {
    return {
      status: "unreachable", doc, fresh, text: "cannot be fetched",
      banner: `Not updating: ${r.error}.${doc ? " Showing the last values it had; they are not live." : ""}`,
    };
  }
  if (fresh.stale) {
    return {
      status: "stale", doc, fresh,
      banner: `Stale: ${WRITERS[name] ?? "its writer"} refreshes this every ${duration(fresh.intervalS)}, `
        + `but the last update is older than ${duration(fresh.staleAfterS)}. These are not live values.`,
    };
  }
  return { status: "ok", doc, fresh };
}

function renderCard(card) {
  const source = app.sources.get(card.source);
  const view = viewOf(card.source, source);
  if (SHOWN_IF[card.name]) card.el.hidden = !SHOWN_IF[card.name](view.doc);
  card.el.dataset.status = view.status;
  if (view.detail) card.el.dataset.detail = view.detail;
  else delete card.el.dataset.detail;
  card.banner.hidden = !view.banner;
  fill(card.banner, view.banner ?? "");
  card.lastStatus = view.status;
  updateAge(card, view);
  if (!view.doc) {
    fill(card.body, h("p", { class: "muted", "data-field": "empty" }, view.text));
    return;
  }
  // Reading a width forces a layout: only the charts need one.
  if (CHART_CARDS.includes(card.name)) card.width = card.body.clientWidth;
  const ctx = {
    now: source.now(), state: card.state, width: card.width, stale: view.status !== "ok",
    rerender: () => renderCard(card),
    other: (name) => app.sources.get(name)?.result.lastGood ?? null,
  };
  try {
    RENDERERS[card.name](card.body, view.doc, ctx);
    card.failedDoc = null;
  } catch (error) {
    // A file that passed the checks but still has a surprise in it: this card only.
    if (card.failedDoc !== view.doc) console.warn(`edgepair: cannot show ${card.source}.json`, error);
    card.failedDoc = view.doc; // the same document is not tried again every second
    card.el.dataset.status = "unreadable";
    card.lastStatus = "unreadable";
    card.banner.hidden = false;
    fill(card.banner, `Unreadable: ${card.source}.json has a value this page cannot show (${error.message}).`);
  }
}

function updateAge(card, view) {
  const fresh = view.fresh;
  if (!fresh || fresh.ageS === null) {
    fill(card.age, "");
    return;
  }
  fill(card.age, `${fresh.intervalS === null ? "as of" : "updated"} ${ago(fresh.ageS)}`);
  card.age.classList.toggle("tone-text-bad", view.status !== "ok");
}

function renderSnapshotPart() {
  const source = app.sources.get("snapshot");
  const view = viewOf("snapshot", source);
  app.snapshotPart.dataset.status = view.status;
  try {
    renderSnapshot(app.snapshotPart, view, source.now());
  } catch (error) {
    // Like a card: a surprise in snapshot.json breaks only this part, and says so.
    console.warn("edgepair: cannot show snapshot.json", error);
    app.snapshotPart.dataset.status = "unreadable";
    fill(app.snapshotPart, h("h3", {}, "Last snapshot"),
      h("p", { class: "banner" }, `Unreadable: snapshot.json has a value this page cannot show (${error.message}).`));
    return;
  }
  if (view.banner) app.snapshotPart.querySelector("h3").after(h("p", { class: "banner" }, view.banner));
}

/** Once every card shows something (data or why not), the first render is complete. */
function markComplete() {
  if (app.complete) return;
  const cards = [...app.cards.values()].filter((c) => !c.el.hidden);
  if (cards.some((c) => c.lastStatus === "loading") || app.snapshotPart.dataset.status === "loading") return;
  app.complete = true;
  window.edgepairRenderedMs = performance.now();
  document.documentElement.dataset.rendered = "complete";
}

/** Every second: ages move on, and a file not refreshed in time turns stale by itself. */
function tick() {
  if (!app.drawn) return;
  for (const card of app.cards.values()) {
    if (card.lastStatus === "loading") continue;
    const source = app.sources.get(card.source);
    const view = viewOf(card.source, source);
    const failedAgain = card.lastStatus === "unreadable" && card.failedDoc === view.doc;
    if (view.status !== card.lastStatus && !failedAgain) {
      renderCard(card);
      continue;
    }
    updateAge(card, view);
    // Only the words of <time data-at> change: focus, selection and screen readers stay put.
    const now = source.now();
    for (const time of card.el.querySelectorAll("time[data-at]")) {
      const words = ago((now - Number(time.dataset.at)) / 1000);
      if (time.textContent !== words) time.textContent = words;
    }
  }
  updateWake();
}

function pause() {
  clearInterval(app.ticker);
  app.ticker = null;
  for (const source of app.sources.values()) source.stop();
}

function resume() {
  for (const source of app.sources.values()) source.start();
  clearInterval(app.ticker);
  app.ticker = setInterval(tick, TICK_MS);
}

function watchWidth() {
  if (!("ResizeObserver" in window)) return;
  for (const name of CHART_CARDS) {
    const card = app.cards.get(name);
    if (!card) continue;
    let pending = false;
    new ResizeObserver(() => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => {
        pending = false;
        if (card.lastStatus !== "loading" && Math.abs(card.body.clientWidth - card.width) > 8) renderCard(card);
      });
    }).observe(card.body);
  }
}

// -- Wake --------------------------------------------------------------------------------

function hostIsMoving() {
  return ["sending", "queued", "sent"].includes(app.flow.phase) || ["waking", "going_offline"].includes(app.hostState);
}

function setUpWake(mode) {
  const button = document.getElementById("wake");
  if (mode.mode === "host") {
    button.hidden = true;
    fill(document.getElementById("wake-status"), "This page is served by the host, so it is awake.");
    return;
  }
  button.addEventListener("click", wake);
}

async function wake() {
  const host = app.sources.get("host");
  const before = app.flow;
  app.flow = { phase: "sending" };
  updateWake();
  let answer;
  try {
    const response = await fetch("api/v1/wake", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ source: "dashboard" }), signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
    });
    let body = null;
    try {
      body = await response.json();
    } catch {
      // not JSON (a proxy's error page): the status says enough
    }
    host.learnClock(response.headers.get("Date"));
    answer = wakeAnswer(response.status, body, response.headers.get("Retry-After"), host.now());
  } catch {
    answer = { phase: "error", message: "Could not reach the Pi to ask for a wake." };
  }
  if (answer.phase === "error" && before.phase === "sent") {
    // Another press refused (too many, say) while a wake is under way: that wake goes on,
    // and its feedback with it; the refusal is a note, not the story.
    answer = { ...before, note: `(Pressed again: ${answer.message.replace(/\.$/, "")}.)` };
  }
  app.flow = answer;
  updateWake();
  host.poll();
}

function updateWake() {
  if (app.mode !== "pi") return;
  const button = document.getElementById("wake");
  const host = app.sources.get("host");
  const view = viewOf("host", host);
  const stale = view.status !== "ok";
  const shown = wakeView(app.flow, view.doc, stale, host.now());
  if (shown.next) app.flow = shown.next;
  button.disabled = shown.disabled;
  button.setAttribute("aria-busy", app.flow.phase === "sending" ? "true" : "false");
  if (button.textContent !== shown.label) button.textContent = shown.label;
  const status = document.getElementById("wake-status");
  status.dataset.tone = shown.tone;
  status.dataset.phase = app.flow.phase;
  if (status.textContent !== shown.message) status.textContent = shown.message;
}

start();
