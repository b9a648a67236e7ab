// tunnelproof browser client: the LiveSession a page uses.
//
//   import { LiveSession } from "/api/live/client.js";
//   const live = new LiveSession({ config: { outputAudioTranscription: true } });
//   live.on("outputTranscript", (e) => show(e.text));
//   live.on("failed", (e) => alert(e.advice));
//   live.start();
//   live.sendText("Hello");
//
// A thin driver around SessionMachine (machine.js), which makes every decision: this file
// only performs its actions (fetch a token, open/close a WebSocket, set timers, store the
// handle) and feeds back what happened. What only a browser has is handled here:
//   * frames are parsed from ArrayBuffer/Blob as well as text (the seed's JSON.parse(e.data)
//     broke on Google's binary frames), in arrival order;
//   * `online` redials at once; `offline` stops burning attempts but never closes a live
//     socket (Chromium's offline mode keeps open sockets working);
//   * a tab shown after being hidden runs overdue timers now and lets the machine check the
//     link; `pagehide`/`freeze` save the handle to sessionStorage for a reload.

import { SessionMachine, storedValidAt } from "./machine.js";
import { bytesToBase64 } from "./protocol.js";

export { SessionMachine, DEFAULT_POLICY, DEFAULT_WATCHDOGS, SessionMetrics, credentialUrl } from "./machine.js";
export { classifyClose, classifyHandshakeStatus, parseServerFrame, ProtocolError } from "./protocol.js";
export { MicCapture, AudioPlayer, connectAudio } from "./audio.js";

/** @typedef {import("./machine.js").LiveConfig} LiveConfig */
/** @typedef {import("./machine.js").Credential} Credential */
/** @typedef {import("./machine.js").AppEvent} AppEvent */
/** @typedef {import("./machine.js").Action} Action */
/** @typedef {import("./machine.js").MachineEvent} MachineEvent */
/** @typedef {import("./machine.js").StoredSession} StoredSession */
/** @typedef {import("./machine.js").TokenFailure} TokenFailure */
/** @typedef {import("./machine.js").RetryPolicy} RetryPolicy */
/** @typedef {import("./machine.js").Watchdogs} Watchdogs */
/** @typedef {import("./outbox.js").SendResult} SendResult */
/** @typedef {import("./outbox.js").OutboxLimits} OutboxLimits */
/** @typedef {import("./protocol.js").Json} Json */

/**
 * A token getter failed in a known way. Throw it from a custom `getToken` so the session
 * can classify it: "auth" (401/403, fatal until the user signs in), "rate_limited" (wait
 * `retryAfter`), "unavailable" (5xx: back off), "offline" (network gone: probe), "config".
 */
export class TokenError extends Error {
  /** @param {TokenFailure} kind @param {string} message @param {number|null} [retryAfter] */
  constructor(kind, message, retryAfter = null) {
    super(message);
    this.name = "TokenError";
    this.kind = kind;
    this.retryAfter = retryAfter;
  }
}

/**
 * The token route's answer, `{token, expiresAt, newSessionExpiresAt, model, wsUrl}`.
 * @typedef {{token: string, wsUrl: string, expiresAt?: string|null, newSessionExpiresAt?: string|null, model?: string|null}} TokenResponse
 */

/** @param {string|null|undefined} iso @returns {number|null} */
function isoSeconds(iso) {
  if (!iso) return null;
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms / 1000 : null;
}

/** @param {TokenResponse|Credential} value @returns {Credential} */
export function toCredential(value) {
  if (!value || typeof value.token !== "string" || typeof value.wsUrl !== "string") {
    throw new TokenError("config", "the token source answered without token/wsUrl");
  }
  const ex = /** @type {any} */ (value).expiresAt;
  const nx = /** @type {any} */ (value).newSessionExpiresAt;
  return {
    token: value.token,
    wsUrl: value.wsUrl,
    expiresAt: typeof ex === "number" ? ex : isoSeconds(ex),
    newSessionExpiresAt: typeof nx === "number" ? nx : isoSeconds(nx),
    model: value.model ?? null,
  };
}

/** A retry-after-ms longer than this (s) is not believed (session/retry_after.py). */
export const MAX_RETRY_AFTER_MS_SECONDS = 3600;

/**
 * Seconds from a Retry-After header (delta-seconds or HTTP-date), or null.
 * @param {string|null|undefined} header @param {number} [nowMs] @returns {number|null}
 */
export function parseRetryAfter(header, nowMs = Date.now()) {
  if (!header || !header.trim()) return null;
  const n = Number(header);
  if (!Number.isNaN(n)) return Number.isFinite(n) ? Math.max(0, n) : null;
  const at = Date.parse(header);
  return Number.isFinite(at) ? Math.max(0, (at - nowMs) / 1000) : null;
}

/**
 * Seconds from a retry-after-ms header, or null when absent or not sane (a finite
 * number of milliseconds, 0 to MAX_RETRY_AFTER_MS_SECONDS).
 * @param {string|null|undefined} header @returns {number|null}
 */
export function parseRetryAfterMs(header) {
  if (!header || !header.trim()) return null;
  const ms = Number(header);
  if (!Number.isFinite(ms) || ms < 0 || ms / 1000 > MAX_RETRY_AFTER_MS_SECONDS) return null;
  return ms / 1000;
}

/**
 * The wait a 429/503 asks for: retry-after-ms (the service's own slot for this client, to
 * the millisecond; the convention the OpenAI and Azure SDKs read first) when it is sane and
 * at most a second beyond Retry-After, else Retry-After (whole seconds); null if neither.
 * A cross-origin token route must list both in Access-Control-Expose-Headers (tunnelproof's
 * add_cors does), or the browser hides them.
 * @param {{get(name: string): string|null}} headers @param {number} [nowMs] @returns {number|null}
 */
export function retryAfterFrom(headers, nowMs = Date.now()) {
  const seconds = parseRetryAfter(headers.get("Retry-After"), nowMs);
  const ms = parseRetryAfterMs(headers.get("retry-after-ms"));
  if (ms === null) return seconds;
  if (seconds !== null && ms > seconds + 1) return seconds;
  return ms;
}

/**
 * The default token getter: `POST tokenUrl` with the page's own credentials (cookies, or
 * the headers given). Never caches: every attempt gets a fresh single-use token.
 * @param {string} tokenUrl @param {RequestInit} [init]
 * @returns {(signal: AbortSignal) => Promise<Credential>}
 */
export function tokenRouteGetter(tokenUrl, init = {}) {
  return async (signal) => {
    let res;
    try {
      res = await fetch(tokenUrl, {
        method: "POST",
        credentials: "same-origin",
        cache: "no-store",
        ...init,
        signal,
      });
    } catch (err) {
      if (signal.aborted) throw err;
      // fetch rejects only when no HTTP answer came at all: the network is gone.
      throw new TokenError("offline", `token route unreachable (${err instanceof Error ? err.message : String(err)})`);
    }
    if (res.status === 401 || res.status === 403) throw new TokenError("auth", `token route answered HTTP ${res.status}`);
    if (res.status === 429) {
      throw new TokenError("rate_limited", "token route answered HTTP 429", retryAfterFrom(res.headers));
    }
    if (res.status >= 500) {
      throw new TokenError("unavailable", `token route answered HTTP ${res.status}`, retryAfterFrom(res.headers));
    }
    if (!res.ok) throw new TokenError("config", `token route answered HTTP ${res.status}`);
    let body;
    try {
      body = await res.json();
    } catch {
      throw new TokenError("unavailable", "token route answered with invalid JSON");
    }
    return toCredential(body);
  };
}

/**
 * @typedef {object} LiveSessionOptions
 * @property {LiveConfig} [config] the setup; `model` defaults to the token's locked model
 * @property {string} [tokenUrl] the token route (default "/api/live/token")
 * @property {RequestInit} [tokenRequest] extra fetch options for the token route (headers)
 * @property {(signal: AbortSignal) => Promise<Credential|TokenResponse>} [getToken] a custom getter; called once per attempt
 * @property {string|null} [conversationId] key of the stored handle; null: no storage
 * @property {Storage|null} [storage] default sessionStorage (survives a reload, not the tab)
 * @property {Partial<RetryPolicy>} [policy]
 * @property {Partial<Watchdogs>} [watchdogs]
 * @property {Partial<OutboxLimits>} [limits]
 * @property {typeof WebSocket} [WebSocket]
 */

const STORAGE_PREFIX = "tunnelproof:";

/** The reconnecting Live session for a page. */
export class LiveSession {
  /** @param {LiveSessionOptions} [options] */
  constructor(options = {}) {
    this.options = options;
    this.machine = new SessionMachine(options.config ?? {}, {
      policy: options.policy,
      watchdogs: options.watchdogs,
      limits: options.limits,
    });
    const getter = options.getToken ?? tokenRouteGetter(options.tokenUrl ?? "/api/live/token", options.tokenRequest);
    /** @type {(signal: AbortSignal) => Promise<Credential>} */
    this.getToken = async (signal) => toCredential(await getter(signal));
    this.WebSocketImpl = options.WebSocket ?? globalThis.WebSocket;
    this.conversationId = options.conversationId === undefined ? "default" : options.conversationId;
    /** @type {Storage|null} */
    this.storage = null;
    if (this.conversationId !== null) {
      try {
        this.storage = options.storage === undefined ? globalThis.sessionStorage ?? null : options.storage;
      } catch {
        this.storage = null; // storage can throw in sandboxed frames
      }
    }
    /** @type {Map<string, Set<(e: any) => void>>} */
    this.listeners = new Map();
    /** @type {Map<string, {id: ReturnType<typeof setTimeout>, serial: number, at: number}>} */
    this.timerHandles = new Map();
    /** @type {Map<number, AbortController>} */
    this.fetches = new Map();
    /** @type {WebSocket|null} */
    this.ws = null;
    this.wsAttempt = 0;
    /** Frames of the current socket are decoded in order, even when a Blob needs a read. */
    /** @type {Promise<void>} */
    this.frameChain = Promise.resolve();
    /** @type {number|null} */
    this.hiddenAt = null;
    /** Bytes handed to the current socket (for the send-stall watchdog). */
    this.sentBytes = 0;
    /** @type {ReturnType<typeof setInterval>|null} */
    this.stallWatch = null;
    /** Frames received on the current socket (evidence of life for a link check). */
    this.framesSeen = 0;
    /** @type {ReturnType<typeof setInterval>|null} */
    this.linkCheck = null;
    this.started = false;
    /** @type {Array<[string, EventListener, EventTarget]>} */
    this.domListeners = [];
  }

  // -- public API ------------------------------------------------------------------------

  /** "idle" | "connecting" | "connected" | "reconnecting" | "failed" | "closing" | "closed" */
  get state() {
    return this.machine.state;
  }

  /** Counters: reconnects, downtime, lastGap, resumes, tokensFetched, replayed/dropped, … */
  get metrics() {
    return this.machine.metrics;
  }

  /** The newest resumable handle (null before the first). */
  get resumptionHandle() {
    return this.machine.resumptionHandle;
  }

  /**
   * True once a resumable handle arrived after the last turnComplete: the server state now
   * holds that turn. Google sends it some 20-70 ms after turnComplete; wait for it (briefly,
   * e.g. 0.5 s) before something that may drop the link, like Python's `ask()` does.
   */
  get lastTurnHeld() {
    return this.machine.lastTurnHeld;
  }

  /**
   * Listen to one event type; returns a function that removes the listener. "*" gets all.
   * @template {AppEvent["type"] | "*"} K
   * @param {K} type
   * @param {(event: K extends "*" ? AppEvent : Extract<AppEvent, {type: K}>) => void} listener
   * @returns {() => void}
   */
  on(type, listener) {
    let set = this.listeners.get(type);
    if (!set) {
      set = new Set();
      this.listeners.set(type, set);
    }
    set.add(listener);
    return () => set.delete(listener);
  }

  /** Open the session (resuming from the stored handle when there is a valid one). */
  start() {
    if (this.started) return;
    this.started = true;
    this.installBrowserHooks();
    this.feed({ type: "started", stored: this.loadStored() });
  }

  /**
   * Send user text (`realtimeInput.text`).
   * @param {string} text @returns {SendResult}
   */
  sendText(text) {
    return this.send({ realtimeInput: { text } });
  }

  /**
   * Send microphone audio: 16-bit little-endian mono PCM at `rate` Hz.
   * @param {Int16Array|Uint8Array|ArrayBuffer} pcm @param {number} [rate] @returns {SendResult}
   */
  sendAudio(pcm, rate = 16000) {
    const bytes = pcm instanceof ArrayBuffer ? new Uint8Array(pcm) : new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength);
    return this.send({ realtimeInput: { audio: { mimeType: `audio/pcm;rate=${rate}`, data: bytesToBase64(bytes) } } });
  }

  /** The microphone was closed (automatic VAD): flush the last turn. @returns {SendResult} */
  sendAudioStreamEnd() {
    return this.send({ realtimeInput: { audioStreamEnd: true } });
  }

  /**
   * Answer tool calls: `[{id, name, response}]` (the id of the toolCall is required).
   * @param {Array<{id: string, name: string, response?: Json}>} responses @returns {SendResult}
   */
  sendToolResponse(responses) {
    if (!responses.length || responses.some((r) => !r.id)) throw new TypeError("each function response needs the id of its tool call");
    return this.send({ toolResponse: { functionResponses: responses.map((r) => ({ id: r.id, name: r.name, response: r.response ?? {} })) } });
  }

  /**
   * Send any one client message (not `setup`). The result says "sent", "queued" (a later
   * drop comes as a `sendDropped` event with this seq) or "dropped" (with the reason).
   * @param {Json} message @returns {SendResult}
   */
  send(message) {
    const [result, actions] = this.machine.send(message, this.clock());
    this.perform(actions);
    return result;
  }

  /** Try again after `failed` (e.g. once the user signed in again), or redial now. */
  resume() {
    this.feed({ type: "resumeRequested" });
  }

  /**
   * Start a fresh server session re-seeded from the transcript (`contextReset`). For a
   * resume the server accepted but that restored nothing (the model "greets afresh"): the
   * wire cannot tell such a resume from a good one, the app can. The current connection is
   * closed at once, the handle dropped; the next session is seeded with the conversation so
   * far, and unanswered questions are asked again after it (Python: `LiveSession.reseed`).
   */
  reseed() {
    this.feed({ type: "reseedRequested" });
  }

  /** Close for good: the stored handle is kept (a reload can still resume) unless `forget`. */
  close({ forget = false } = {}) {
    this.feed({ type: "closeRequested" });
    if (forget) this.removeStored();
    this.removeBrowserHooks();
  }

  // -- machine plumbing --------------------------------------------------------------------

  clock() {
    return { now: performance.now() / 1000, wall: Date.now() / 1000 };
  }

  /** @param {MachineEvent} event */
  feed(event) {
    this.perform(this.machine.handle(event, this.clock()));
  }

  /** @param {Action[]} actions */
  perform(actions) {
    for (const action of actions) {
      switch (action.type) {
        case "fetchToken":
          this.fetchToken(action.request);
          break;
        case "cancelTokenFetch":
          this.fetches.get(action.request)?.abort();
          this.fetches.delete(action.request);
          break;
        case "openSocket":
          this.openSocket(action.attempt, action.url);
          break;
        case "sendFrame":
          if (this.ws && this.wsAttempt === action.attempt && this.ws.readyState === 1) {
            this.ws.send(action.text);
            // bufferedAmount counts UTF-8 bytes; frames are ASCII but for user text.
            this.sentBytes += /[^\x00-\x7f]/.test(action.text) ? new TextEncoder().encode(action.text).length : action.text.length;
          }
          break;
        case "closeSocket":
          if (this.ws && this.wsAttempt === action.attempt) this.ws.close(action.code, action.reason.slice(0, 120));
          break;
        case "abortSocket":
          this.abortSocket(action.attempt, action.reason);
          break;
        case "setTimer":
          this.setTimer(action.name, action.serial, action.at);
          break;
        case "cancelTimer": {
          const t = this.timerHandles.get(action.name);
          if (t) clearTimeout(t.id);
          this.timerHandles.delete(action.name);
          break;
        }
        case "saveHandle":
          this.saveStored(action.session);
          break;
        case "deleteHandle":
          this.removeStored();
          break;
        case "checkLink":
          this.checkLink(action.attempt);
          break;
        case "emit":
          this.dispatch(action.event);
          break;
      }
    }
  }

  /** @param {AppEvent} event */
  dispatch(event) {
    for (const key of [event.type, "*"]) {
      for (const listener of this.listeners.get(key) ?? []) {
        try {
          listener(event);
        } catch (err) {
          // An app bug must not stop the session; it is still reported.
          queueMicrotask(() => {
            throw err;
          });
        }
      }
    }
  }

  /** @param {number} request */
  fetchToken(request) {
    const controller = new AbortController();
    this.fetches.set(request, controller);
    this.getToken(controller.signal).then(
      (credential) => {
        if (this.fetches.get(request) !== controller) return;
        this.fetches.delete(request);
        this.feed({ type: "tokenFetched", request, credential });
      },
      (err) => {
        if (this.fetches.get(request) !== controller) return;
        this.fetches.delete(request);
        /** @type {TokenFailure} */
        let kind = "unavailable";
        /** @type {number|null} */
        let retryAfter = null;
        if (err instanceof TokenError) {
          kind = err.kind;
          retryAfter = err.retryAfter;
        } else if (err instanceof TypeError) {
          kind = "offline";
        }
        this.feed({ type: "tokenFailed", request, kind, message: err instanceof Error ? err.message : String(err), retryAfter });
      },
    );
  }

  /** @param {number} attempt @param {string} url */
  openSocket(attempt, url) {
    let ws;
    try {
      ws = new this.WebSocketImpl(url);
    } catch (err) {
      this.feed({ type: "socketOpenFailed", attempt, kind: "error", message: err instanceof Error ? err.message : String(err) });
      return;
    }
    // ArrayBuffer, not Blob: decoding stays synchronous and in order.
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.wsAttempt = attempt;
    this.frameChain = Promise.resolve();
    this.framesSeen = 0;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.watchSendBuffer(ws, attempt);
      this.feed({ type: "socketOpened", attempt });
    };
    ws.onmessage = (e) => {
      if (this.ws === ws) this.framesSeen += 1;
      const data = e.data;
      if (typeof Blob !== "undefined" && data instanceof Blob) {
        // Only if someone switched binaryType back: read it, keeping frame order.
        this.inOrder(async () => {
          const buf = await data.arrayBuffer();
          this.feed({ type: "frameReceived", attempt, data: buf });
        });
        return;
      }
      this.inOrder(() => this.feed({ type: "frameReceived", attempt, data }));
    };
    ws.onclose = (e) => {
      const report = () => {
        if (this.ws === ws) this.ws = null;
        if (!opened) {
          // A browser hides why a handshake failed (network, TLS or an HTTP refusal all
          // look alike): treat it as the network, which probes; the machine drops a token
          // that failed twice.
          this.feed({ type: "socketOpenFailed", attempt, kind: "offline", message: `WebSocket failed before opening (${e.code})` });
        } else {
          this.feed({ type: "socketClosed", attempt, code: e.code, reason: e.reason });
        }
      };
      // Frames before the close are handled first.
      this.inOrder(report);
    };
  }

  /**
   * The send-stall watchdog: a browser shows no TCP state, but `bufferedAmount` stops
   * draining when the kernel cannot deliver. Drained bytes over a tick = the previous
   * backlog + what was sent since - the backlog now; none at all with a backlog, for
   * `sendStallTimeout` seconds of real time, is a dead link.
   * @param {WebSocket} ws @param {number} attempt
   */
  watchSendBuffer(ws, attempt) {
    if (this.stallWatch !== null) clearInterval(this.stallWatch);
    this.sentBytes = 0;
    let lastBuffered = 0;
    let lastSent = 0;
    let lastTick = this.clock().now;
    let stalledFor = 0;
    this.stallWatch = setInterval(() => {
      if (this.ws !== ws) {
        if (this.stallWatch !== null) clearInterval(this.stallWatch);
        this.stallWatch = null;
        return;
      }
      const now = this.clock().now;
      const buffered = ws.bufferedAmount;
      const drained = lastBuffered + (this.sentBytes - lastSent) - buffered;
      stalledFor = buffered > 0 && drained <= 0 ? stalledFor + (now - lastTick) : 0;
      lastBuffered = buffered;
      lastSent = this.sentBytes;
      lastTick = now;
      if (stalledFor >= this.machine.watchdogs.sendStallTimeout) {
        const seconds = stalledFor;
        stalledFor = 0;
        this.feed({ type: "sendStalled", attempt, seconds });
      }
    }, 500);
  }

  /**
   * Answer the machine's `checkLink` (a reply is overdue) from what a page can see: a page
   * has no TCP_INFO and cannot send or see WebSocket pings, so the evidence of life is any
   * frame received since the check started, or the send buffer (`bufferedAmount`) draining.
   * Polled until `linkCheckTimeout`; with no evidence the driver says nothing and the
   * machine's own timer decides the link is dead (silence is not evidence either way).
   * @param {number} attempt
   */
  checkLink(attempt) {
    if (this.linkCheck !== null) clearInterval(this.linkCheck);
    this.linkCheck = null;
    const ws = this.ws;
    if (!ws || this.wsAttempt !== attempt) return;
    const frames0 = this.framesSeen;
    let lastBuffered = ws.bufferedAmount;
    let lastSent = this.sentBytes;
    const until = this.clock().now + this.machine.watchdogs.linkCheckTimeout;
    const stop = () => {
      if (this.linkCheck !== null) clearInterval(this.linkCheck);
      this.linkCheck = null;
    };
    this.linkCheck = setInterval(() => {
      if (this.ws !== ws || this.clock().now > until) {
        stop();
        return;
      }
      const buffered = ws.bufferedAmount;
      const drained = lastBuffered + (this.sentBytes - lastSent) - buffered;
      let detail = "";
      if (this.framesSeen > frames0) detail = "a frame arrived";
      else if (lastBuffered > 0 && drained > 0) detail = "the send buffer drained";
      lastBuffered = buffered;
      lastSent = this.sentBytes;
      if (detail) {
        stop();
        this.feed({ type: "linkChecked", attempt, alive: true, detail });
      }
    }, 250);
  }

  /**
   * Run `step` after the socket's earlier frames. A step that throws is reported, and the
   * chain goes on: one bad frame must not silence every later one.
   * @param {() => void | Promise<void>} step
   */
  inOrder(step) {
    this.frameChain = this.frameChain.then(step).catch((err) => {
      queueMicrotask(() => {
        throw err;
      });
    });
  }

  /** @param {number} attempt @param {string} reason */
  abortSocket(attempt, reason) {
    const ws = this.ws;
    if (!ws || this.wsAttempt !== attempt) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    this.ws = null;
    try {
      ws.close(4000, `tunnelproof: ${reason}`.slice(0, 120));
    } catch {
      // already closing
    }
  }

  /** @param {string} name @param {number} serial @param {number} at */
  setTimer(name, serial, at) {
    const old = this.timerHandles.get(name);
    if (old) clearTimeout(old.id);
    const delayMs = Math.max(0, (at - this.clock().now) * 1000);
    const id = setTimeout(() => {
      const t = this.timerHandles.get(name);
      if (!t || t.serial !== serial) return;
      this.timerHandles.delete(name);
      this.feed({ type: "timerFired", name, serial });
    }, delayMs);
    this.timerHandles.set(name, { id, serial, at });
  }

  /** Timers a hidden tab throttled or froze: run the overdue ones now. */
  runOverdueTimers() {
    const now = this.clock().now;
    for (const [name, t] of [...this.timerHandles]) {
      if (t.at <= now) {
        clearTimeout(t.id);
        this.timerHandles.delete(name);
        this.feed({ type: "timerFired", name, serial: t.serial });
      }
    }
  }

  // -- storage -------------------------------------------------------------------------------

  get storageKey() {
    return STORAGE_PREFIX + this.conversationId;
  }

  /** @returns {StoredSession|null} */
  loadStored() {
    if (!this.storage) return null;
    try {
      const raw = this.storage.getItem(this.storageKey);
      if (!raw) return null;
      const stored = JSON.parse(raw);
      if (typeof stored?.handle !== "string") return null;
      const validity = this.machine.watchdogs.handleValidity;
      // A handle saved while connected has no disconnect time: count from its save.
      const since = { ...stored, disconnectedAt: stored.disconnectedAt ?? stored.savedAt ?? null };
      if (!storedValidAt(since, Date.now() / 1000, validity)) {
        this.storage.removeItem(this.storageKey);
        return null;
      }
      return stored;
    } catch {
      return null;
    }
  }

  /** @param {StoredSession} session */
  saveStored(session) {
    try {
      this.storage?.setItem(this.storageKey, JSON.stringify(session));
    } catch {
      // quota or privacy mode: the session still works, it just cannot survive a reload
    }
  }

  removeStored() {
    try {
      this.storage?.removeItem(this.storageKey);
    } catch {
      // ignore: see saveStored
    }
  }

  // -- browser hooks ----------------------------------------------------------------------------

  /** @param {EventTarget|undefined} target @param {string} type @param {EventListener} fn */
  listen(target, type, fn) {
    if (!target || typeof target.addEventListener !== "function") return;
    target.addEventListener(type, fn);
    this.domListeners.push([type, fn, target]);
  }

  installBrowserHooks() {
    const win = typeof window !== "undefined" ? window : undefined;
    const doc = typeof document !== "undefined" ? document : undefined;
    this.listen(win, "online", () => {
      this.runOverdueTimers();
      this.feed({ type: "networkOnline" });
    });
    this.listen(win, "offline", () => this.feed({ type: "networkOffline" }));
    if (typeof navigator !== "undefined" && navigator.onLine === false) this.feed({ type: "networkOffline" });
    this.listen(doc, "visibilitychange", () => {
      if (!doc) return;
      if (doc.visibilityState === "hidden") {
        this.hiddenAt = this.clock().now;
        this.saveSnapshot();
      } else if (this.hiddenAt !== null) {
        const hiddenFor = this.clock().now - this.hiddenAt;
        this.hiddenAt = null;
        this.runOverdueTimers();
        this.feed({ type: "pageShown", hiddenFor });
      }
    });
    this.listen(win, "pagehide", () => this.saveSnapshot());
    this.listen(doc, "freeze", () => {
      this.hiddenAt = this.hiddenAt ?? this.clock().now;
      this.saveSnapshot();
    });
    this.listen(doc, "resume", () => {
      const hiddenFor = this.hiddenAt === null ? 0 : this.clock().now - this.hiddenAt;
      this.hiddenAt = null;
      this.runOverdueTimers();
      this.feed({ type: "pageShown", hiddenFor });
    });
  }

  removeBrowserHooks() {
    for (const [type, fn, target] of this.domListeners) target.removeEventListener(type, fn);
    this.domListeners = [];
  }

  /** pagehide/freeze/hidden: keep the newest handle (and transcript) for a reload. */
  saveSnapshot() {
    const snap = this.machine.snapshot();
    if (snap) this.saveStored({ ...snap, savedAt: Date.now() / 1000, disconnectedAt: Date.now() / 1000 });
  }
}
