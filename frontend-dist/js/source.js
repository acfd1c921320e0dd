// One public file: fetched with a timeout, checked, and polled at its own pace.

import { problem } from "./core.js";

// The Date header has a one-second resolution: only correct clocks that are clearly off.
const SKEW_IGNORE_MS = 2000;
// A Pi that is switched off does not refuse connections, it just never answers.
export const FETCH_TIMEOUT_MS = 10_000;

/**
 * The latest outcome for one file. status: loading | ok | absent | unreadable | unreachable.
 * `lastGood` keeps the last readable document, so a Pi that stops answering shows what it
 * last said — marked by its age, never as live.
 */
export class Source {
  constructor(name, url, { schema = name, onResult, delayS }) {
    this.name = name;
    this.schema = schema;
    this.url = url;
    this.onResult = onResult;
    this.delayS = delayS;
    this.result = { status: "loading", doc: null, lastGood: null, error: "", failures: 0 };
    this.skewMs = 0;
    this.timer = null;
    this.inFlight = null;
    this.running = false;
    this.text = null;
  }

  /** The server's clock as far as we can tell (the browser's, corrected by the Date header). */
  now() {
    return Date.now() + this.skewMs;
  }

  start() {
    this.running = true;
    this.poll();
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = null;
  }

  /** Fetch now (unless a fetch is under way), then go on at the file's pace. */
  poll() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.inFlight) return this.inFlight;
    this.inFlight = this.fetchOnce().finally(() => {
      this.inFlight = null;
      if (this.running) this.schedule();
    });
    return this.inFlight;
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.poll(), this.delayS(this) * 1000);
  }

  async fetchOnce() {
    const outcome = await this.fetchDocument();
    const previous = this.result;
    const failed = outcome.status === "unreachable" || outcome.status === "unreadable";
    const changed = outcome.status !== previous.status || outcome.text !== this.text;
    this.text = outcome.text ?? null;
    this.result = {
      status: outcome.status,
      doc: outcome.doc ?? null,
      lastGood: outcome.status === "ok" ? outcome.doc : outcome.status === "unreachable" ? previous.lastGood : null,
      error: outcome.error ?? "",
      failures: failed ? previous.failures + 1 : 0,
    };
    this.onResult(this, changed);
  }

  async fetchDocument() {
    let response;
    try {
      response = await fetch(this.url, { cache: "no-store", signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
    } catch (error) {
      const why = error?.name === "TimeoutError" ? `no answer from ${where(this.url)} within ${FETCH_TIMEOUT_MS / 1000} s`
        : `cannot reach ${where(this.url)}`;
      return { status: "unreachable", error: why };
    }
    this.learnClock(response.headers.get("Date"));
    if (response.status === 404) return { status: "absent" };
    if (!response.ok) return { status: "unreachable", error: `${where(this.url)} answered HTTP ${response.status}` };
    let text;
    try {
      text = await response.text();
    } catch {
      return { status: "unreachable", error: `the answer from ${where(this.url)} broke off` };
    }
    let doc;
    try {
      doc = JSON.parse(text);
    } catch {
      return { status: "unreadable", text, error: `${fileName(this.url)} is not valid JSON` };
    }
    const why = problem(this.schema, doc);
    if (why) return { status: "unreadable", text, error: `${fileName(this.url)}: ${why}` };
    return { status: "ok", text, doc };
  }

  learnClock(dateHeader) {
    const server = Date.parse(dateHeader ?? "");
    if (Number.isNaN(server)) return;
    const skew = server + 500 - Date.now();
    this.skewMs = Math.abs(skew) < SKEW_IGNORE_MS ? 0 : skew;
  }
}

function where(url) {
  const parsed = new URL(url, location.href);
  return parsed.origin === location.origin ? "the server" : parsed.host;
}

function fileName(url) {
  return new URL(url, location.href).pathname.split("/").pop();
}
