// tunnelproof browser client: the reconnecting Live client as a pure state machine.
//
// A port of tunnelproof/session/machine.py (the Python SessionMachine): no sockets, no
// timers, no clock, no Math.random. `handle(event, {now, wall})` and `send(message,
// {now, wall})` return the actions to perform, in order; the browser driver (client.js)
// only performs them. `now` is a monotonic clock in seconds, `wall` UNIX seconds (token
// and handle expiry). The contract scenarios in tests/contract/ run against both machines.
//
// Browser-only inputs (the Python client has kernel signals instead): `networkOffline`,
// `networkOnline` and `pageShown`. Chromium's offline mode keeps open sockets working, so
// `networkOffline` never closes a live socket; it only stops burning attempts.

import { classifyClose, classifyHandshakeStatus, isFatal, parseServerFrame, ProtocolError, base64ToBytes, verdict } from "./protocol.js";
import {
  AudioDropLedger,
  DEFAULT_LIMITS,
  DEFAULT_MAX_BYTES,
  DEFAULT_MAX_TURNS,
  Outbox,
  Transcript,
  makeOutgoing,
  oversized,
  sendResult,
  settleToolCalls,
  toolAnswerRefusal,
  withoutToolIds,
} from "./outbox.js";
import { TurnRestore } from "./restore.js";
import { TurnTracker } from "./turns.js";

/** @typedef {import("./protocol.js").Json} Json */
/** @typedef {import("./protocol.js").CloseVerdict} CloseVerdict */
/** @typedef {import("./protocol.js").ServerMessage} ServerMessage */
/** @typedef {import("./protocol.js").FunctionCall} FunctionCall */
/** @typedef {import("./outbox.js").Outgoing} Outgoing */
/** @typedef {import("./outbox.js").SendResult} SendResult */
/** @typedef {import("./outbox.js").Turn} Turn */
/** @typedef {import("./outbox.js").OutboxLimits} OutboxLimits */

/**
 * Retry policy (contract 5): steady probes while the network is gone, exponential backoff
 * with full jitter on server errors, caps per outage and per session.
 * @typedef {object} RetryPolicy
 * @property {number} offlineInterval seconds between probes while the network is gone
 * @property {number} offlineJitter probes spread by ± this
 * @property {number|null} maxOfflineSeconds give up after this long offline (null: never)
 * @property {number} baseDelay first server-error backoff ceiling
 * @property {number} multiplier ceiling growth per consecutive server failure
 * @property {number} maxDelay the largest ceiling
 * @property {number|null} maxAttemptsPerOutage server failures in a row before Failed
 * @property {number|null} maxAttemptsPerSession server failures per session before Failed
 * @property {number} stableAfter seconds up before the failure counter resets
 * @property {number} browserOfflineProbe probe interval while the browser says offline
 * @property {number} healthyAfter seconds a connection must have served (after
 *   setupComplete) for an abrupt drop of it to be retried at once whatever came before
 * @property {number} immediateBudget quick drops (sooner than healthyAfter) retried at once
 *   per immediateWindow seconds; beyond it they back off like server errors
 * @property {number} immediateWindow see immediateBudget
 * @property {number|null} dropMaxDelay the largest backoff ceiling (full jitter) for quick
 *   drops beyond the budget, counted against maxAttemptsPerSession only: each dropped
 *   connection completed setup, so a flapping link must not escalate to maxDelay (null:
 *   back them off like server errors)
 * @property {boolean} shedIsWait a 429/503 with Retry-After is a wait, not a failure
 *   counted against the caps
 * @property {number} handoverBudget planned handovers (goAway) in a row from connections
 *   younger than stableAfter that go at once; later ones stay until the server closes (a
 *   backstop at timeLeft + closeTimeout) and then wait a backoff, so a server that sends
 *   goAway on every connection drives no hot loop, and an answer can still arrive
 */

/** The shortest wait after a shed answer (s), whatever the server asked (session/policy.py). */
export const SHED_MIN_DELAY = 0.1;
/** Jitter on a precise (sub-second) shed wait: this fraction of it, within [SHED_MIN_JITTER, baseDelay]. */
export const SHED_JITTER_FRACTION = 0.1;
export const SHED_MIN_JITTER = 0.02;

/** @type {RetryPolicy} */
export const DEFAULT_POLICY = Object.freeze({
  offlineInterval: 0.75,
  offlineJitter: 0.15,
  maxOfflineSeconds: null,
  baseDelay: 0.5,
  multiplier: 2,
  maxDelay: 30,
  maxAttemptsPerOutage: 12,
  maxAttemptsPerSession: 100,
  stableAfter: 10,
  // navigator.onLine === false is reliable about "no interface", but `online` can be late
  // or missing (captive portals, some web views): probe slowly instead of never.
  browserOfflineProbe: 5,
  // An abrupt drop (1006) of a connection that reached setup: the server did nothing
  // wrong, so the first attempt goes at once (session/policy.py's numbers).
  healthyAfter: 0.25,
  immediateBudget: 5,
  immediateWindow: 60,
  dropMaxDelay: 2,
  shedIsWait: true,
  handoverBudget: 3,
});

/**
 * Watchdogs (contract 6). No ping timeouts: browsers hide pings, and Gemini's pongs can
 * take 8-30 s anyway. Silence alone never tears down a link: the reply watchdog runs only
 * while a reply is due or model output is flowing.
 * @typedef {object} Watchdogs
 * @property {number} tokenTimeout a token fetch taking longer counts as the network being
 *   gone. While the network is gone, fetches start with probeConnectTimeout, but a backend
 *   known to be slow gets twice its last observed answer time (+0.5 s), and each fetch that
 *   timed out doubles the next one's allowance up to tokenTimeout: a slow backend is always
 *   let answer (see offlineTokenTimeout)
 * @property {number} connectTimeout
 * @property {number} probeConnectTimeout
 * @property {number} setupTimeout
 * @property {number} replyTimeout a reply overdue this long asks the driver for a link
 *   check (action checkLink); silence alone is not evidence of a dead link. Counted from
 *   the last server message or the oldest reply owed: a new question never postpones it
 * @property {number} linkCheckTimeout no sign of life within this long of a link check is
 *   a dead link
 * @property {number} closeTimeout
 * @property {number} goAwayMargin a goAway handover happens at the latest timeLeft - margin
 * @property {number} handoverHandleGrace when that deadline comes right after a turn
 *   completed, the handover waits this much longer for the turn's resumable handle (it
 *   arrives some 20-70 ms after turnComplete) instead of resuming from an older one
 * @property {number} handleValidity seconds a handle lives after the last disconnect
 * @property {number} hiddenRecheckAfter a tab hidden this long is checked when shown again
 * @property {number} sendStallTimeout the browser's send buffer (`bufferedAmount`) not
 *   draining at all for this long is a dead link (the page's stand-in for TCP_USER_TIMEOUT)
 * @property {number} staleSocketWait a resume the server refuses (closed before
 *   setupComplete, not 1007) is retried with the handle kept for this long: the server most
 *   likely still holds the session's old half-open socket and refuses (1011) until it notices
 *   it is dead. Only then is the handle given up for a fresh session (Python's
 *   `Watchdogs.stale_socket_wait`).
 */

/** @type {Watchdogs} */
export const DEFAULT_WATCHDOGS = Object.freeze({
  tokenTimeout: 10,
  connectTimeout: 10,
  probeConnectTimeout: 3,
  setupTimeout: 10,
  replyTimeout: 20,
  linkCheckTimeout: 30,
  closeTimeout: 2,
  goAwayMargin: 5,
  handoverHandleGrace: 0.25,
  handleValidity: 2 * 60 * 60,
  hiddenRecheckAfter: 30,
  sendStallTimeout: 5,
  staleSocketWait: 30,
});

/**
 * The token fetch allowance while the network is gone (Python:
 * `Watchdogs.offline_token_timeout`). Short while probing a gone network, but never shorter
 * than a slow backend needs: every fetch cancelled just before its answer would never end.
 * @param {Watchdogs} watchdogs
 * @param {number|null} lastFetch how long the last successful fetch took (null before any)
 * @param {number} timeoutsInRow offline fetches in a row that timed out
 */
export function offlineTokenTimeout(watchdogs, lastFetch, timeoutsInRow) {
  let allowance = watchdogs.probeConnectTimeout;
  if (lastFetch !== null) allowance = Math.max(allowance, 2 * lastFetch + 0.5);
  allowance *= 2 ** Math.min(timeoutsInRow, 16);
  return Math.min(watchdogs.tokenTimeout, allowance);
}

/**
 * What the session sends as `setup`. `model` may be omitted when the token route locks it
 * (its answer's `model` is used). `setup` holds extra setup fields, merged last.
 * @typedef {object} LiveConfig
 * @property {string} [model]
 * @property {"AUDIO"|"TEXT"} [modality]
 * @property {string} [systemInstruction]
 * @property {boolean} [inputAudioTranscription]
 * @property {boolean} [outputAudioTranscription]
 * @property {boolean} [sessionResumption] default true
 * @property {Json} [generationConfig] extra generationConfig fields
 * @property {Json} [setup] extra setup fields
 */

/**
 * A credential for one attempt. Times are UNIX seconds.
 * @typedef {{token: string, wsUrl: string, expiresAt?: number|null, newSessionExpiresAt?: number|null, model?: string|null}} Credential
 */

/** @typedef {{handle: string, savedAt: number, disconnectedAt: number|null, transcript: Turn[]}} StoredSession */

/** @typedef {"auth"|"rate_limited"|"unavailable"|"offline"|"config"} TokenFailure */

/**
 * @typedef {{type: "started", stored?: StoredSession|null}
 *   | {type: "tokenFetched", request: number, credential: Credential}
 *   | {type: "tokenFailed", request: number, kind: TokenFailure, message?: string, retryAfter?: number|null}
 *   | {type: "socketOpened", attempt: number}
 *   | {type: "socketOpenFailed", attempt: number, kind: "offline"|"handshake"|"error", status?: number|null, message?: string, retryAfter?: number|null}
 *   | {type: "frameReceived", attempt: number, data: string|ArrayBuffer|ArrayBufferView}
 *   | {type: "socketClosed", attempt: number, code: number|null, reason?: string}
 *   | {type: "timerFired", name: string, serial: number}
 *   | {type: "closeRequested"}
 *   | {type: "resumeRequested"}
 *   | {type: "reseedRequested"}
 *   | {type: "networkOffline"}
 *   | {type: "networkOnline"}
 *   | {type: "pageShown", hiddenFor: number}
 *   | {type: "sendStalled", attempt: number, seconds: number}
 *   | {type: "linkChecked", attempt: number, alive: boolean, detail?: string}} MachineEvent
 */

/**
 * @typedef {{type: "connected", attempt: number, first: boolean}
 *   | {type: "resumed", attempt: number, gap: number, replayed: number}
 *   | {type: "reconnecting", delay: number, attempt: number, reason: string, kind: "offline"|"server", planned: boolean}
 *   | {type: "disconnected", code: number|null, reason: string, planned: boolean}
 *   | {type: "rewound", partialText: string, replyLost: boolean, cancelledToolCallIds: string[], unanswered: string[], reasked: boolean}
 *   | {type: "turnsRestored", turns: number, seqs: number[], missing: string[], reasked: boolean}
 *   | {type: "contextReset", reason: string, seededTurns: number}
 *   | {type: "goAway", timeLeft: number|null, handoverBy: number}
 *   | {type: "failed", verdict: CloseVerdict, advice: string}
 *   | {type: "sendDropped", seqs: number[], kind: string, reason: string, audioMs: number}
 *   | {type: "delivered", seqs: number[]}
 *   | {type: "closed"}
 *   | {type: "protocolViolation", message: string, size: number|null}
 *   | {type: "text", text: string}
 *   | {type: "audio", pcm: Uint8Array, mimeType: string}
 *   | {type: "inputTranscript", text: string, finished: boolean}
 *   | {type: "outputTranscript", text: string, finished: boolean}
 *   | {type: "toolCall", calls: FunctionCall[], reissued: string[]}
 *   | {type: "toolCallCancelled", ids: string[]}
 *   | {type: "generationComplete"}
 *   | {type: "turnComplete", reason: string|null}
 *   | {type: "interrupted"}
 *   | {type: "usage", promptTokens: number|null, responseTokens: number|null, totalTokens: number|null}
 *   | {type: "unknownServerMessage", kind: string, raw: unknown}} AppEvent
 */

/**
 * @typedef {{type: "fetchToken", request: number, prefetch: boolean}
 *   | {type: "cancelTokenFetch", request: number}
 *   | {type: "openSocket", attempt: number, url: string, timeout: number}
 *   | {type: "sendFrame", attempt: number, text: string}
 *   | {type: "closeSocket", attempt: number, code: number, reason: string}
 *   | {type: "abortSocket", attempt: number, reason: string}
 *   | {type: "setTimer", name: string, serial: number, at: number}
 *   | {type: "cancelTimer", name: string}
 *   | {type: "saveHandle", session: StoredSession}
 *   | {type: "deleteHandle"}
 *   | {type: "checkLink", attempt: number}
 *   | {type: "emit", event: AppEvent}} Action
 */

/** @typedef {"idle"|"connecting"|"connected"|"reconnecting"|"failed"|"closing"|"closed"} SessionState */

/** Counters (contract 9). */
export class SessionMetrics {
  constructor() {
    this.connectAttempts = 0;
    this.connections = 0;
    this.reconnects = 0;
    this.resumesAttempted = 0;
    this.resumesSucceeded = 0;
    this.freshSessionFallbacks = 0;
    this.goAways = 0;
    this.plannedHandovers = 0;
    this.deadLinksDetected = 0;
    this.offlineFailures = 0;
    this.serverFailures = 0;
    this.tokensFetched = 0;
    this.tokensReused = 0;
    this.downtimeTotal = 0;
    /** @type {number|null} */
    this.lastGap = null;
    /** @type {number[]} */
    this.gaps = [];
    this.messagesReplayed = 0;
    this.messagesDropped = 0;
    this.audioMsReplayed = 0;
    this.audioMsDropped = 0;
    this.protocolErrors = 0;
    this.linkChecks = 0;
    this.immediateReconnects = 0;
    this.shedWaits = 0;
  }

  /** Resumes that reached setupComplete / resumes attempted (null before any). */
  get resumeSuccessRate() {
    return this.resumesAttempted ? this.resumesSucceeded / this.resumesAttempted : null;
  }
}

/** How a message sent to a tunnelproof relay starts: its name (protocol/relay_setup.py). */
const NAME_PREFIX = '{"tunnelproofName":"';
const T_TOKEN = "token";
const T_CONNECT = "connect";
const T_SETUP = "setup";
const T_REPLY = "reply";
const T_STABLE = "stable";
const T_RETRY = "retry";
const T_GOAWAY = "goaway";
const T_HANDLE_GRACE = "handle_grace";
const T_CLOSE = "close";
const T_LINK = "link";
const T_PREFETCH = "prefetch";
const CONNECTION_TIMERS = [T_CONNECT, T_SETUP, T_REPLY, T_STABLE, T_GOAWAY, T_HANDLE_GRACE, T_CLOSE, T_LINK, T_PREFETCH];

/**
 * A resume refused while the server still holds the old socket is retried at most this far
 * apart (the whole wait is bounded by `staleSocketWait`). Python: REFUSAL_RETRY_CEILING.
 */
export const REFUSAL_RETRY_CEILING = 2;

/** @param {string} model */
function resourceName(model) {
  return model.startsWith("models/") || model.startsWith("projects/") ? model : `models/${model}`;
}

/**
 * The token's WebSocket URL with the token in the query (browsers cannot set headers on a
 * WebSocket; Google's docs use `access_token`). Never logged.
 * @param {Credential} cred
 */
export function credentialUrl(cred) {
  if (!cred.token) throw new TypeError("the token source returned an empty token");
  if (!/^wss?:\/\//.test(cred.wsUrl ?? "")) throw new TypeError("the token source returned no ws:// or wss:// wsUrl");
  const sep = cred.wsUrl.includes("?") ? "&" : "?";
  return `${cred.wsUrl}${sep}access_token=${encodeURIComponent(cred.token)}`;
}

/** @param {Credential} cred @param {number} wall @param {number} [margin] */
function usableForNewSession(cred, wall, margin = 2) {
  for (const t of [cred.expiresAt, cred.newSessionExpiresAt]) {
    if (t !== null && t !== undefined && !(wall + margin < t)) return false;
  }
  return true;
}

/** @param {StoredSession} stored @param {number} wall @param {number} validity */
export function storedValidAt(stored, wall, validity) {
  return stored.disconnectedAt === null || stored.disconnectedAt === undefined || wall < stored.disconnectedAt + validity;
}

/**
 * @typedef {object} MachineOptions
 * @property {Partial<RetryPolicy>} [policy]
 * @property {Partial<Watchdogs>} [watchdogs]
 * @property {Partial<OutboxLimits>} [limits]
 * @property {() => number} [random] uniform [0, 1); inject a seeded one in tests
 * @property {number} [transcriptTurns] the transcript keeps the newest turns (default 200)
 * @property {number} [transcriptBytes] ... and at most this many UTF-8 bytes (default 128 KiB)
 */

/** The sans-I/O core of the browser LiveSession. */
export class SessionMachine {
  /** @param {LiveConfig} config @param {MachineOptions} [options] */
  constructor(config, options = {}) {
    this.config = config;
    /** @type {RetryPolicy} */
    this.policy = { ...DEFAULT_POLICY, ...options.policy };
    /** @type {Watchdogs} */
    this.watchdogs = { ...DEFAULT_WATCHDOGS, ...options.watchdogs };
    this.random = options.random ?? Math.random;
    this.outbox = new Outbox({ ...DEFAULT_LIMITS, ...options.limits });
    this.transcript = new Transcript(options.transcriptTurns ?? DEFAULT_MAX_TURNS, options.transcriptBytes ?? DEFAULT_MAX_BYTES);
    this.metrics = new SessionMetrics();
    /** @type {"idle"|"fetching"|"opening"|"setup"|"connected"|"closing"|"waiting"|"failed"|"closed"} */
    this.phase = "idle";

    this.now = 0;
    this.wall = 0;
    /** @type {Action[]} */
    this.out = [];

    this.requestSeq = 0;
    /** @type {number|null} */
    this.request = null;
    /** @type {Credential|null} */
    this.credential = null;
    this.credentialFresh = false;
    this.credentialTried = false;
    this.authRetryUsed = false;
    /** @type {string|null} */
    this.lockedModel = null;
    /** When the token fetch in flight was asked (monotonic). @type {number|null} */
    this.askedAt = null;
    /** How long the last successful token fetch took (a slow backend is let answer). @type {number|null} */
    this.lastFetchSeconds = null;
    /** Token fetches in a row the machine gave up on (each doubles the next offline wait). */
    this.tokenTimeoutsInRow = 0;

    this.attemptId = 0;
    this.socketLive = false;
    this.resuming = false;
    /** @type {""|"handover"|"user"} */
    this.closePurpose = "";
    /** @type {number|null} */
    this.connectedAt = null;
    /** @type {number|null} monotonic time of the last frame on the live connection */
    this.lastFrameAt = null;
    /** Only unparseable frames since the last message: not a reply, nor proof of a healthy server. */
    this.garbageSinceMessage = false;

    /** @type {string|null} */
    this.handleValue = null;
    this.handleCurrent = false;
    /** The handle when the last turn completed (see `lastTurnHeld`). @type {string|null} */
    this.handleAtTurnEnd = null;
    /** @type {number|null} */
    this.disconnectedAt = null;
    /** @type {string|null} */
    this.resetReason = null;
    this.hadSession = false;
    this.everConnected = false;
    this.resumeRefusals = 0;
    /** @type {number|null} when the first of the refusals in a row came */
    this.refusedSince = null;

    /** Which server turn answers which client message (FIFO; turns.js). */
    this.turns = new TurnTracker();
    /** Turns completed since the newest handle: restored as history after a drop (restore.js). */
    this.restore = new TurnRestore(this.turns, {
      audio: (config.modality ?? "AUDIO") === "AUDIO",
      enabled: config.sessionResumption !== false,
    });
    /** @type {Outgoing|null} the newest message written on this connection (a 1007 rejects it) */
    this.lastWritten = null;
    /** Question texts by seq, kept until answered: told to the app if an answer is lost. @type {Map<number, string>} */
    this.questionTexts = new Map();
    /**
     * Questions whose answer a lost connection cut or owed and that the session asks again
     * itself (replayed on a resume, re-asked after the history in a fresh one).
     * @type {Set<number>}
     */
    this.reask = new Set();
    /** Model text of the answer a lost connection cut. */
    this.cutPartial = "";
    /**
     * A relay keeps the model's turn going through our drop (its setupComplete says so):
     * the rewound of a drop from such a connection waits for the resume, which says whether
     * anything was lost; emitted then only if it was (or if the session ends first).
     */
    this.serverKeepsTurns = false;
    /** Names this client's messages to a relay (drawn on the first relay connection). */
    this.instanceName = "";
    /** @type {AppEvent|null} */
    this.heldRewind = null;
    /**
     * Re-asked questions taken out of the transcript for a fresh session: written back when
     * asked again (a replay, which is otherwise never written twice). @type {Set<number>}
     */
    this.unwritten = new Set();
    /** Audio dropped during an outage, reported once when it ends. */
    this.audioDrops = new AudioDropLedger();
    /** @type {number[]} times of quick drops retried at once (immediateBudget) */
    this.quickDrops = [];
    /** @type {""|"sent"|"read"} */
    this.seedState = "";
    /** @type {Set<string>} */
    this.openToolCalls = new Set();
    /** @type {string[]} */
    this.callsSinceHandle = [];
    /** @type {Set<string>} */
    this.cancelledToolIds = new Set();
    /** Closed call id -> why, for the refusal of a late answer (Python: ToolCalls._settled). @type {Map<string, string>} */
    this.settledToolCalls = new Map();
    /** Calls cancelled by the last reconnect; the next tool call re-issues them. @type {string[]} */
    this.reissuePending = [];
    /** Open call id -> the question it answers (Python: ToolCalls._question). @type {Map<string, number|null>} */
    this.toolQuestions = new Map();
    /** The oldest question of reissuePending (Python: ToolCalls._pending_for). @type {number|null} */
    this.reissuePendingFor = null;

    this.goAwaySeen = false;
    this.handoverPending = false;
    this.handoverReason = "";

    this.outageFailures = 0;
    this.sessionFailures = 0;
    this.outageAttempts = 0;
    /** Planned handovers in a row of connections younger than stableAfter (handoverBudget). */
    this.quickHandovers = 0;
    /** @type {number|null} */
    this.offlineSince = null;
    /** @type {number|null} */
    this.lostAt = null;
    this.lastFailureOffline = false;
    /** The browser says there is no network (navigator.onLine false). */
    this.browserOffline = false;

    this.timerSerial = 0;
    /** @type {Map<string, number>} */
    this.timers = new Map();
    /** When each timer set last is due (read only while it runs: keepSooner). @type {Map<string, number>} */
    this.timerDue = new Map();
    this.seq = 0;
  }

  // -- public surface ------------------------------------------------------------------

  /** @returns {SessionState} */
  get state() {
    switch (this.phase) {
      case "idle":
        return "idle";
      case "connected":
        return "connected";
      case "failed":
        return "failed";
      case "closed":
        return "closed";
      case "closing":
        if (this.closePurpose === "user") return "closing";
      // falls through
      default:
        return this.everConnected ? "reconnecting" : "connecting";
    }
  }

  /** The newest resumable handle, if any. */
  get resumptionHandle() {
    return this.handleValue;
  }

  /**
   * True once a resumable handle arrived after the last turnComplete. Google sends the
   * handle that holds a turn some 20-70 ms after turnComplete; a drop (or reload) before
   * it resumes from the older state and replays the turn's question. Mirrors Python's
   * `LiveSession.last_turn_held`.
   */
  get lastTurnHeld() {
    return this.handleValue !== null && this.handleValue !== this.handleAtTurnEnd;
  }

  /** The id of the newest socket attempt. */
  get attempt() {
    return this.attemptId;
  }

  /**
   * What to store for a page reload (pagehide/freeze): the handle, counted as disconnected
   * now (the server starts its validity window when the socket goes away).
   * @returns {StoredSession|null}
   */
  snapshot() {
    if (this.handleValue === null) return null;
    return {
      handle: this.handleValue,
      savedAt: this.wall,
      disconnectedAt: this.disconnectedAt ?? this.wall,
      transcript: this.transcript.snapshot(),
    };
  }

  /**
   * Process `event` at monotonic `now` / wall-clock `wall` (seconds); return the actions.
   * @param {MachineEvent} event @param {{now: number, wall: number}} clock @returns {Action[]}
   */
  handle(event, clock) {
    this.now = clock.now;
    this.wall = clock.wall;
    this.out = [];
    switch (event.type) {
      case "started":
        this.onStarted(event.stored ?? null);
        break;
      case "tokenFetched":
        this.onTokenFetched(event);
        break;
      case "tokenFailed":
        this.onTokenFailed(event);
        break;
      case "socketOpened":
        this.onSocketOpened(event.attempt);
        break;
      case "socketOpenFailed":
        this.onOpenFailed(event);
        break;
      case "frameReceived":
        this.onFrame(event.attempt, event.data);
        break;
      case "socketClosed":
        this.onSocketClosed(event.attempt, event.code, event.reason ?? "");
        break;
      case "timerFired":
        this.onTimer(event.name, event.serial);
        break;
      case "closeRequested":
        this.onCloseRequested();
        break;
      case "resumeRequested":
        this.onResumeRequested();
        break;
      case "reseedRequested":
        this.onReseedRequested();
        break;
      case "networkOffline":
        this.browserOffline = true;
        break;
      case "networkOnline":
        this.onNetworkOnline();
        break;
      case "pageShown":
        this.onPageShown(event.hiddenFor);
        break;
      case "sendStalled":
        this.onSendStalled(event.attempt, event.seconds);
        break;
      case "linkChecked":
        this.onLinkChecked(event.attempt, event.alive, event.detail ?? "");
        break;
    }
    this.endOfCall();
    const out = this.out;
    this.out = [];
    return out;
  }

  /**
   * The app sends `message` (one client message object). Throws TypeError for a setup or
   * a malformed message (programming errors).
   * @param {Json} message @param {{now: number, wall: number}} clock
   * @returns {[SendResult, Action[]]}
   */
  send(message, clock) {
    this.now = clock.now;
    this.wall = clock.wall;
    this.out = [];
    const item = makeOutgoing(this.seq + 1, message, this.now);
    this.seq += 1;
    const result = this.accept(item);
    this.endOfCall();
    const out = this.out;
    this.out = [];
    return [result, out];
  }

  // -- helpers ---------------------------------------------------------------------------

  endOfCall() {
    // Audio drops are gathered during an outage and reported when it ends; while connected
    // (or once stopped) they are reported at the end of the call.
    if (this.phase === "connected" || this.phase === "failed" || this.phase === "closed") this.reportAudioDrops();
  }

  /** @param {AppEvent} event */
  emit(event) {
    this.out.push({ type: "emit", event });
  }

  /**
   * Start (or restart) `name` to fire `delay` s from now; with `keepSooner`, a running
   * timer keeps its earlier deadline (Python: Timers.set_by).
   * @param {string} name @param {number} delay @param {boolean} [keepSooner]
   */
  setTimer(name, delay, keepSooner = false) {
    let at = this.now + Math.max(0, delay);
    const due = this.timerDue.get(name);
    if (keepSooner && this.timers.has(name) && due !== undefined) at = Math.min(at, due);
    this.timerSerial += 1;
    this.timers.set(name, this.timerSerial);
    this.timerDue.set(name, at);
    this.out.push({ type: "setTimer", name, serial: this.timerSerial, at });
  }

  /** @param {...string} names */
  cancelTimer(...names) {
    for (const name of names) {
      if (this.timers.delete(name)) this.out.push({ type: "cancelTimer", name });
    }
  }

  /** @param {string} text */
  sendWire(text) {
    this.out.push({ type: "sendFrame", attempt: this.attemptId, text });
  }

  /** @param {string} reason */
  abort(reason) {
    if (this.socketLive) {
      this.out.push({ type: "abortSocket", attempt: this.attemptId, reason });
      this.socketLive = false;
    }
  }

  /** @param {Outgoing[]} items @param {string} reason */
  reportDropped(items, reason) {
    if (!items.length) return;
    this.metrics.messagesDropped += items.length;
    const audio = items.filter((i) => i.kind === "audio");
    if (audio.length) {
      // Gathered and reported once per outage (or at the end of this call while connected):
      // one event with the total, not one per 20 ms chunk.
      const ms = audio.reduce((s, i) => s + i.audioMs, 0);
      this.metrics.audioMsDropped += ms;
      this.audioDrops.add(
        audio.map((i) => i.seq),
        ms,
        reason,
      );
    }
    for (const item of items) {
      if (item.kind === "audio") continue;
      if (this.unwritten.has(item.seq)) {
        // Taken out of the transcript to be asked again, and never asked: gone.
        this.unwritten.delete(item.seq);
      } else if (item.wasSent) {
        // Written once, so it is in the transcript; a fresh session re-seeded from it would
        // then hold a message the app was told is lost (and may resend).
        for (const t of item.turns) this.transcript.forget(t.role, t.text);
      }
      // A restore message goes with the sends it covers (restore.js).
      const seqs = [item.seq, ...this.restore.covered([item.seq])];
      this.emit({ type: "sendDropped", seqs, kind: item.kind, reason, audioMs: 0 });
    }
  }

  /** Emit the audio dropped since the last report as one sendDropped. */
  reportAudioDrops() {
    const taken = this.audioDrops.take();
    if (taken !== null) {
      const [seqs, ms, reason] = taken;
      this.emit({ type: "sendDropped", seqs, kind: "audio", reason, audioMs: ms });
    }
  }

  /** @param {number} seq */
  forgetQuestionsUpTo(seq) {
    for (const old of [...this.questionTexts.keys()]) if (old <= seq) this.questionTexts.delete(old);
  }

  /**
   * The app closes the session: every send still unconfirmed gets its verdict. No resume
   * will follow, so a handle is no longer needed as evidence: what the live connection
   * carried and no answer was owed for counts as delivered; a question still waiting for
   * its answer is reported dropped (it will never be answered).
   */
  settleAtClose() {
    if (this.connectedAt === null) return; // a lost connection put it all back in pending
    const awaiting = new Set(this.turns.awaitingAnswer);
    const unread = this.outbox.unconfirmed.filter((i) => awaiting.has(i.seq));
    const read = this.outbox.unconfirmed.filter((i) => !awaiting.has(i.seq)).map((i) => i.seq);
    read.push(...this.restore.covered(read));
    const earlier = this.outbox.takeUnverified().map((a) => a.seq);
    if (read.length || earlier.length) this.emit({ type: "delivered", seqs: [...earlier, ...read].sort((a, b) => a - b) });
    this.outbox.removeWhere((i) => awaiting.has(i.seq) && i.wasSent);
    this.reportDropped(unread, "the session was closed before the server answered it");
  }

  /**
   * A resumable handle arrived: decide which sends its state holds, and say so. The one
   * place delivery is decided. The handle holds everything sent before it, except the sends
   * awaiting an answer (the oldest unanswered question and all after it): the server marks
   * itself not resumable while it generates, so a handle issued before any output answering
   * them was issued before it read them. Audio no turn has consumed is not held either (an
   * unfinished utterance is not in the state).
   */
  confirmDelivery() {
    const first = this.turns.unheldFrom;
    const keep = first === null ? 0 : this.outbox.unconfirmed.filter((i) => i.seq >= first).length;
    const confirmed = this.outbox.confirm(keep).map((i) => i.seq);
    confirmed.push(...this.historyPastUnheardAudio(first));
    confirmed.push(...this.restore.covered(confirmed)); // the sends a restore message stands for
    // Audio that left the replay window earlier was sent before these: held too, unless no
    // turn has consumed it yet.
    const earlier = this.outbox.takeUnverified(first).map((a) => a.seq);
    if (confirmed.length || earlier.length) {
      this.emit({ type: "delivered", seqs: [...earlier, ...confirmed].sort((a, b) => a - b) });
    }
  }

  /**
   * History (clientContent asking no answer) sent after audio no turn consumed and before
   * any unanswered question: the server appended it at once, so the handle holds it though
   * the unfinished utterance before it is not (replaying it would put it in the history
   * twice). Confirmed, out of order (Python: _history_past_unheard_audio).
   * @param {number | null} first
   * @returns {number[]}
   */
  historyPastUnheardAudio(first) {
    const asked = this.turns.awaitingAnswer.slice(0, 1);
    if (first === null || (asked.length && asked[0] <= first)) return [];
    const limit = asked.length ? asked[0] : null;
    const held = this.outbox.unconfirmed.filter(
      (i) => i.kind === "client_content" && !i.expectsReply && i.seq > first && (limit === null || i.seq < limit),
    );
    if (held.length) this.outbox.removeWhere((i) => held.includes(i));
    return held.map((i) => i.seq);
  }

  /** @param {boolean} prefetch */
  fetchToken(prefetch) {
    this.requestSeq += 1;
    this.request = this.requestSeq;
    this.askedAt = this.now;
    this.out.push({ type: "fetchToken", request: this.request, prefetch });
  }

  saveHandle() {
    if (this.handleValue === null) return;
    this.out.push({
      type: "saveHandle",
      session: {
        handle: this.handleValue,
        savedAt: this.wall,
        disconnectedAt: this.disconnectedAt,
        transcript: this.transcript.snapshot(),
      },
    });
  }

  /** @param {string} reason */
  dropHandle(reason) {
    if (this.handleValue !== null) this.out.push({ type: "deleteHandle" });
    this.handleValue = null;
    this.handleCurrent = false;
    this.resetReason = reason;
  }

  // -- start, credentials ----------------------------------------------------------------

  /** @param {StoredSession|null} stored */
  onStarted(stored) {
    if (this.phase !== "idle") return;
    if (stored) {
      this.transcript.load(stored.transcript ?? []);
      this.disconnectedAt = stored.disconnectedAt ?? null;
      if (storedValidAt(stored, this.wall, this.watchdogs.handleValidity)) {
        this.handleValue = stored.handle;
        this.hadSession = true;
      } else {
        this.out.push({ type: "deleteHandle" });
        this.resetReason = "the stored resumption handle has expired";
      }
    }
    this.lostAt = this.now;
    this.startAttempt();
  }

  handleExpired() {
    if (this.handleValue === null || this.disconnectedAt === null) return false;
    return this.wall >= this.disconnectedAt + this.watchdogs.handleValidity;
  }

  startAttempt() {
    if (this.phase === "closed" || this.phase === "failed") return;
    this.cancelTimer(T_RETRY);
    if (this.handleExpired()) this.dropHandle("the resumption handle expired (2 h after the disconnect)");
    if (this.handleValue === null && this.hadSession) this.prepareFreshSession();
    this.outageAttempts += 1;
    const cred = this.credential;
    if (cred !== null && usableForNewSession(cred, this.wall)) {
      if (this.credentialTried) this.metrics.tokensReused += 1;
      this.credentialFresh = !this.credentialTried;
      this.open(cred);
      return;
    }
    this.credential = null;
    this.phase = "fetching";
    if (this.request === null) this.fetchToken(false);
    let timeout = this.watchdogs.tokenTimeout;
    if (this.offlineSince !== null) {
      // Short while probing a gone network, but never shorter than a slow backend needs:
      // every fetch cancelled just before its answer would never end.
      timeout = offlineTokenTimeout(this.watchdogs, this.lastFetchSeconds, this.tokenTimeoutsInRow);
    }
    this.setTimer(T_TOKEN, timeout);
  }

  /** @param {{request: number, credential: Credential}} event */
  onTokenFetched(event) {
    if (event.request !== this.request) return;
    this.request = null;
    this.cancelTimer(T_TOKEN);
    this.metrics.tokensFetched += 1;
    if (this.askedAt !== null) this.lastFetchSeconds = this.now - this.askedAt;
    this.tokenTimeoutsInRow = 0;
    this.credential = event.credential;
    this.credentialTried = false;
    if (this.phase === "fetching") {
      this.credentialFresh = true;
      this.open(event.credential);
    } else if (this.phase === "connected") {
      this.maybeHandover(); // a goAway handover waits for this token
    }
  }

  /** @param {{request: number, kind: TokenFailure, message?: string, retryAfter?: number|null}} event */
  onTokenFailed(event) {
    if (event.request !== this.request) return;
    this.request = null;
    this.cancelTimer(T_TOKEN);
    if (this.phase !== "fetching") {
      // A failed goAway prefetch: fetch again while the connection lasts, so the handover
      // still has its token in hand (the goAway deadline hands over regardless).
      if (this.phase === "connected" && this.handoverPending) {
        const wait = event.retryAfter ?? 0;
        this.setTimer(T_PREFETCH, wait > 0 ? this.shedDelay(wait) : Math.min(1, this.random() * this.policy.baseDelay));
      }
      return;
    }
    const message = event.message || event.kind;
    if (event.kind === "auth") {
      this.fail(
        verdict(
          "fatal_auth",
          null,
          message,
          "The token source refused to issue a token (HTTP 401/403): the user must sign in again, then call resume().",
        ),
      );
    } else if (event.kind === "config") {
      this.fail(verdict("fatal_config", null, message, "The token source is misconfigured (URL, key or settings); fix it, then call resume()."));
    } else if (event.kind === "offline") {
      this.offlineFailure(`token source unreachable: ${message}`);
    } else {
      this.serverFailure(`token source: ${message}`, event.retryAfter ?? null);
    }
  }

  // -- socket lifecycle ---------------------------------------------------------------------

  /** @param {Credential} cred */
  open(cred) {
    let url;
    try {
      url = credentialUrl(cred);
    } catch (err) {
      this.credential = null;
      this.fail(
        verdict(
          "fatal_config",
          null,
          err instanceof Error ? err.message : String(err),
          "The token source returned an unusable credential; fix it, then resume().",
        ),
      );
      return;
    }
    if (cred.model) this.lockedModel = cred.model;
    this.attemptId += 1;
    this.socketLive = true;
    this.credentialTried = true;
    this.phase = "opening";
    this.metrics.connectAttempts += 1;
    const timeout = this.lastFailureOffline ? this.watchdogs.probeConnectTimeout : this.watchdogs.connectTimeout;
    this.out.push({ type: "openSocket", attempt: this.attemptId, url, timeout });
    this.setTimer(T_CONNECT, timeout);
  }

  /** The setup message for `handle` (null: a new session). @param {string|null} handle @returns {Json} */
  setupMessage(handle) {
    const c = this.config;
    const model = c.model ?? this.lockedModel;
    if (!model) throw new TypeError("no model: set config.model or let the token route lock one");
    /** @type {Json} */
    const body = {
      model: resourceName(model),
      generationConfig: { responseModalities: [c.modality ?? "AUDIO"], ...c.generationConfig },
    };
    if (c.systemInstruction) body.systemInstruction = { parts: [{ text: c.systemInstruction }] };
    if (c.inputAudioTranscription) body.inputAudioTranscription = {};
    if (c.outputAudioTranscription) body.outputAudioTranscription = {};
    Object.assign(body, c.setup ?? {});
    if (handle !== null) body.sessionResumption = { handle };
    else if (c.sessionResumption !== false) body.sessionResumption = {};
    return { setup: body };
  }

  get resumptionEnabled() {
    return this.config.sessionResumption !== false;
  }

  /** @param {number} attempt */
  onSocketOpened(attempt) {
    if (attempt !== this.attemptId || this.phase !== "opening") return;
    this.cancelTimer(T_CONNECT);
    this.credential = null; // the handshake completed: the token is spent
    this.authRetryUsed = false;
    this.phase = "setup";
    const handle = this.resumptionEnabled ? this.handleValue : null;
    this.resuming = handle !== null;
    if (this.resuming) this.metrics.resumesAttempted += 1;
    this.sendWire(JSON.stringify(this.setupMessage(handle)));
    this.setTimer(T_SETUP, this.watchdogs.setupTimeout);
  }

  /** @param {{attempt: number, kind: "offline"|"handshake"|"error", status?: number|null, message?: string, retryAfter?: number|null}} event */
  onOpenFailed(event) {
    if (event.attempt !== this.attemptId || this.phase !== "opening") return;
    this.cancelTimer(T_CONNECT);
    this.socketLive = false;
    if (event.kind === "offline") {
      // The handshake never completed, so the credential stays usable (contract 1) -- once:
      // a browser cannot tell a lost network from an HTTP refusal of the upgrade, so a
      // token that already failed once is dropped rather than offered forever.
      if (!this.credentialFresh) this.credential = null;
      this.offlineFailure(event.message || "network unreachable");
      return;
    }
    const reused = !this.credentialFresh;
    this.credential = null;
    if (event.kind === "error" || event.status === null || event.status === undefined) {
      this.serverFailure(event.message || "handshake failed");
      return;
    }
    const v = classifyHandshakeStatus(event.status, event.message ?? "");
    if (v.kind === "fatal_auth" && reused && !this.authRetryUsed) {
      this.authRetryUsed = true;
      this.startAttempt();
    } else if (v.kind === "retry") {
      this.serverFailure(`handshake HTTP ${event.status}`, event.retryAfter ?? null);
    } else {
      this.fail(v);
    }
  }

  /** @param {number} attempt @param {number|null} code @param {string} reason */
  onSocketClosed(attempt, code, reason) {
    if (attempt !== this.attemptId || !this.socketLive) return;
    this.socketLive = false;
    const phase = this.phase;
    if (phase === "opening") {
      this.cancelTimer(T_CONNECT);
      this.offlineFailure(reason || "connection closed during the handshake");
      return;
    }
    if (phase === "closing") {
      this.afterOurClose(code, reason);
      return;
    }
    if (phase !== "setup" && phase !== "connected") return;
    let v = classifyClose(code, reason, { resuming: this.resuming, afterGoAway: this.goAwaySeen });
    const planned = this.goAwaySeen && !isFatal(v) && v.kind !== "bad_resume";
    const duringSetup = phase === "setup";
    if (v.kind === "fatal_auth" && !duringSetup) {
      // Accepted earlier, ended over it later: the token expired mid-connection.
      v = verdict("retry", v.code, v.reason, "The credential expired.");
    }
    const served = this.connectedAt !== null ? this.now - this.connectedAt : 0;
    const culprit = duringSetup ? null : this.lastWritten;
    this.connectionGone(code, reason, planned);
    const described = `closed ${code} ${reason}`.trim();
    if (planned) {
      this.handedOver(served);
      this.handoverDone("the server ended the connection after goAway");
    } else if (v.kind === "bad_resume" && !duringSetup && culprit !== null) {
      // The handle was accepted: a 1007 now rejects the newest message written. Report
      // it, never replay it, resume again (each rejection counts: no loop).
      this.reportDropped(
        this.outbox.removeWhere((i) => i.seq === culprit.seq),
        `the server rejected a message (${described})`,
      );
      this.serverFailure(`the server rejected a message (${described})`);
    } else if (v.kind === "bad_resume") {
      this.badResume(v.advice);
    } else if (isFatal(v)) {
      if (v.kind === "bad_request") {
        this.reportDropped(
          this.outbox.removeWhere((i) => i.wasSent),
          "the server rejected the session's messages",
        );
      }
      this.fail(v);
    } else {
      if (duringSetup && this.resuming) {
        // A refused resume is most often the server still holding the session's old
        // half-open socket (Google refuses with 1011 until it notices): keep the handle and
        // wait it out, for staleSocketWait; a drop in setup is probed (no verdict).
        this.resumeRefusals += 1;
        if (this.refusedSince === null) this.refusedSince = this.now;
        const waited = this.now - this.refusedSince;
        if (waited >= this.watchdogs.staleSocketWait) {
          this.badResume(`the server refused the resumed setup for ${waited.toFixed(0)} s (${described})`);
        } else if (code === null || code === 1006) {
          this.offlineFailure(`the link dropped during the resumed setup (${described})`);
        } else {
          this.refusalFailure(`resume refused (${described})`);
        }
        return;
      }
      if (!duringSetup && (code === null || code === 1006) && !reason.startsWith("closed by the client")) {
        this.afterDrop(`the link dropped (${described})`, served);
      } else {
        this.serverFailure(described);
      }
    }
  }

  /** @param {number|null} code @param {string} reason */
  afterOurClose(code, reason) {
    this.cancelTimer(T_CLOSE);
    this.connectionGone(code, reason, true);
    if (this.closePurpose === "user") {
      this.finishClose();
      return;
    }
    this.metrics.plannedHandovers += 1;
    this.handoverDone(this.handoverReason);
  }

  /** @param {number|null} code @param {string} reason @param {boolean} planned */
  connectionGone(code, reason, planned) {
    const wasConnected = this.connectedAt !== null;
    this.connectedAt = null;
    this.lastFrameAt = null;
    this.garbageSinceMessage = false;
    this.socketLive = false;
    this.cancelTimer(...CONNECTION_TIMERS);
    this.goAwaySeen = false;
    this.handoverPending = false;
    if (wasConnected) {
      this.lostAt = this.now;
      this.disconnectedAt = this.wall;
      this.saveHandle();
      this.emit({ type: "disconnected", code, reason, planned });
    }
    const partialText = this.transcript.partialModelText;
    const lost = this.turns.connectionLost();
    // Completed turns the handle lacks go back as history, not questions (restore.js).
    const willResume = this.handleValue !== null && !this.seedState;
    const [restored, kept] = this.restore.connectionLost(this.outbox, this.now, willResume);
    const toolIds = this.callsSinceHandle.filter((id) => !kept.has(id));
    this.transcript.commitModel();
    this.lastWritten = null;
    // Which owed questions the session asks again itself: those the server's state may
    // lack (unconfirmed, so replayed). A confirmed one is in the state without its answer;
    // replaying it would duplicate it, so the app is told (replyLost). A setup that failed
    // carried no conversation: the earlier verdicts stand.
    const unconfirmed = new Set(this.outbox.unconfirmed.map((i) => i.seq));
    /** @type {number[]} */
    const owed = [];
    for (const seq of [lost.cut, ...lost.waiting]) if (seq !== null) owed.push(seq);
    const lostQuestions = owed.filter((seq) => !unconfirmed.has(seq));
    if (wasConnected) {
      this.cutPartial = partialText.trim();
      this.reask = new Set(owed.filter((seq) => unconfirmed.has(seq)));
    }
    /** @type {string[]} */
    const unanswered = [];
    for (const seq of lostQuestions) {
      const text = this.questionTexts.get(seq);
      if (text !== undefined) unanswered.push(text);
    }
    const replyLost = lostQuestions.length > 0;
    if (restored !== null) this.emit(restored);
    if (toolIds.length) this.cancelToolCalls(new Set(toolIds));
    if (partialText || lost.owed || toolIds.length) {
      const reasked = owed.some((seq) => unconfirmed.has(seq));
      /** @type {AppEvent} */
      const rewound = { type: "rewound", partialText, replyLost, cancelledToolCallIds: toolIds, unanswered, reasked };
      if (wasConnected && this.serverKeepsTurns && !toolIds.length) this.heldRewind = rewound;
      else this.emit(rewound);
    }
    if (wasConnected) this.serverKeepsTurns = false;
    this.callsSinceHandle = [];
    // Audio sent beyond the replay window with no confirmation since: the link died with
    // it, and nothing can replay it. Reported, never silently lost.
    const unverifiedAudio = this.outbox.takeUnverified();
    if (unverifiedAudio.length) {
      const ms = unverifiedAudio.reduce((sum, a) => sum + a.audioMs, 0);
      this.metrics.messagesDropped += unverifiedAudio.length;
      this.metrics.audioMsDropped += ms;
      this.audioDrops.add(
        unverifiedAudio.map((a) => a.seq),
        ms,
        "sent into a link that died, beyond the replay window (the server may lack it)",
      );
    }
    // What the resumed state lacks goes back into the queue (contract 3).
    this.reportDropped(this.outbox.requeueUnconfirmed(this.now), "too old to replay after reconnect");
    if (this.seedState) {
      this.seedState = "";
      this.dropHandle("the link dropped before the re-seeded session showed its history");
      this.hadSession = true;
    }
  }

  /**
   * A model turn (answering `question`, if known) completed without a tool call (Python:
   * ToolCalls.turn_answered). It ends a pending re-issue (the model answered without
   * calling the tool again), unless it was `cut` short or answers a question older than the
   * cancelled calls' one: the replayed messages' turns before the re-issued call (each cut by
   * the next) must not take its `reissued` flag away.
   * @param {number|null} question @param {boolean} cut
   */
  toolTurnAnswered(question, cut) {
    if (!this.reissuePending.length || cut) return;
    const pending = this.reissuePendingFor;
    if (question === null || pending === null || question >= pending) {
      this.reissuePending = [];
      this.reissuePendingFor = null;
    }
  }

  /** @param {Set<string>} ids */
  cancelToolCalls(ids) {
    for (const id of ids) {
      this.openToolCalls.delete(id);
      this.cancelledToolIds.add(id);
    }
    if (this.cancelledToolIds.size > 4096) this.cancelledToolIds = new Set([...this.cancelledToolIds].slice(-2048));
    this.reissuePending = [...new Set([...this.reissuePending, ...[...ids].sort()])].slice(-64);
    const asked = [...ids].map((id) => this.toolQuestions.get(id)).filter((q) => q !== undefined && q !== null);
    if (asked.length) {
      const earliest = Math.min(.../** @type {number[]} */ (asked));
      this.reissuePendingFor = this.reissuePendingFor === null ? earliest : Math.min(earliest, this.reissuePendingFor);
    }
    this.reportDropped(this.outbox.dropToolAnswers(ids), "answers a tool call the resumed session never saw");
  }

  prepareFreshSession() {
    if (this.resetReason === null) this.resetReason = "the connection was lost before a resumption handle arrived";
    // Answers still unconfirmed answer calls the new session never saw: dropped too.
    const answered = this.outbox.pending.flatMap((i) => i.toolIds);
    if (this.openToolCalls.size || answered.length) {
      const ids = [...this.openToolCalls].sort();
      this.cancelToolCalls(new Set([...ids, ...answered]));
      if (ids.length) {
        this.emit({ type: "rewound", partialText: "", replyLost: false, cancelledToolCallIds: ids, unanswered: [], reasked: false });
      }
    }
    // Text already sent is in the transcript, which re-seeds the new session, except the
    // questions still owed an answer: they are asked again after the history (and leave the
    // history, with the cut-off start of their answer), so the fresh session answers them
    // instead of holding them as a finished past.
    const reask = this.reask;
    /** @param {Outgoing} i */
    const isText = (i) => i.kind === "text" || i.kind === "client_content";
    for (const item of this.outbox.pending) {
      if (item.wasSent && isText(item) && reask.has(item.seq)) {
        for (const t of item.turns) this.transcript.forget(t.role, t.text);
        this.unwritten.add(item.seq);
      }
    }
    if (reask.size && this.cutPartial) this.transcript.forget("model", this.cutPartial);
    this.outbox.removeWhere((i) => i.wasSent && isText(i) && !reask.has(i.seq));
    this.hadSession = false;
  }

  /** @param {string} reason */
  badResume(reason) {
    this.dropHandle(reason);
    this.resumeRefusals = 0;
    this.refusedSince = null;
    this.metrics.freshSessionFallbacks += 1;
    this.hadSession = true;
    this.reconnectNow(reason);
  }

  // -- frames --------------------------------------------------------------------------------

  /** @param {number} attempt @param {string|ArrayBuffer|ArrayBufferView} data */
  onFrame(attempt, data) {
    if (attempt !== this.attemptId || (this.phase !== "setup" && this.phase !== "connected")) return;
    this.lastFrameAt = this.now;
    let frame;
    try {
      frame = parseServerFrame(data);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.metrics.protocolErrors += 1;
      this.garbageSinceMessage = true; // not a reply, and not proof of a healthy server
      this.emit({ type: "protocolViolation", message: err.message, size: err.size });
      return;
    }
    this.garbageSinceMessage = false;
    this.cancelTimer(T_LINK); // a message is evidence of life
    for (const message of frame.messages) {
      if ((this.phase !== "setup" && this.phase !== "connected") || attempt !== this.attemptId) return;
      this.onMessage(message);
    }
    if (this.phase === "connected") {
      if (this.turns.owed) {
        // Something is owed: any message proves the link alive; silence does not.
        this.setTimer(T_REPLY, this.watchdogs.replyTimeout);
      } else {
        this.cancelTimer(T_REPLY);
      }
    }
    this.maybeHandover();
  }

  /** @param {ServerMessage} message */
  onMessage(message) {
    switch (message.kind) {
      case "setupComplete":
        if (this.phase === "setup") this.onSetupComplete(message.keepsTurns, message.resumedIntact);
        break;
      case "serverContent":
        this.onContent(message);
        break;
      case "sessionResumptionUpdate":
        this.onResumptionUpdate(message.resumable, message.newHandle);
        break;
      case "toolCall": {
        // The calls a reconnect cancelled that this one re-issues (Python: ToolCalls.reissued).
        const reissued = this.reissuePending;
        this.reissuePending = [];
        this.reissuePendingFor = null;
        const question = this.turns.toolCallArrived(); // the model waits for the app now
        const ids = message.functionCalls.map((c) => c.id).filter((id) => id);
        for (const id of ids) {
          this.openToolCalls.add(id);
          this.toolQuestions.set(id, question);
        }
        if (this.toolQuestions.size > 4096) {
          // Bounded: old calls are long settled.
          for (const old of [...this.toolQuestions.keys()].slice(0, -2048)) this.toolQuestions.delete(old);
        }
        this.callsSinceHandle.push(...ids);
        this.handleCurrent = false;
        if (this.seedState) this.seedState = "read";
        this.emit({ type: "toolCall", calls: message.functionCalls, reissued });
        break;
      }
      case "toolCallCancellation":
        for (const id of message.ids) this.openToolCalls.delete(id);
        settleToolCalls(this.settledToolCalls, message.ids, "the server withdrew it with toolCallCancellation");
        this.emit({ type: "toolCallCancelled", ids: message.ids });
        break;
      case "goAway":
        this.onGoAway(message.timeLeft);
        break;
      case "usageMetadata":
        this.emit({
          type: "usage",
          promptTokens: message.promptTokenCount,
          responseTokens: message.responseTokenCount,
          totalTokens: message.totalTokenCount,
        });
        break;
      case "unknown":
        this.emit({ type: "unknownServerMessage", kind: message.name, raw: message.raw });
        break;
    }
  }

  /** @param {boolean} keepsTurns @param {boolean} resumedIntact */
  onSetupComplete(keepsTurns, resumedIntact) {
    // A held rewound: an intact resume continues the turn (nothing was rewound); any other
    // setupComplete means the cut stands, said before resumed/contextReset.
    if (!(this.resuming && resumedIntact)) this.releaseHeldRewind();
    this.heldRewind = null;
    this.serverKeepsTurns = keepsTurns;
    if (keepsTurns && !this.instanceName) {
      this.instanceName = Math.floor(this.random() * 2 ** 32).toString(16).padStart(8, "0");
    }
    this.cancelTimer(T_SETUP);
    this.phase = "connected";
    this.connectedAt = this.now;
    this.disconnectedAt = null; // the 2 h window counts from the *next* disconnect
    this.handleCurrent = this.resuming;
    const first = !this.everConnected;
    this.everConnected = true;
    this.hadSession = true;
    this.resumeRefusals = 0;
    this.refusedSince = null;
    this.offlineSince = null;
    this.lastFailureOffline = false;
    this.outageAttempts = 0;
    this.metrics.connections += 1;
    if (!first) this.metrics.reconnects += 1;
    const gap = this.lostAt !== null ? this.now - this.lostAt : 0;
    this.lostAt = null;
    if (!first || this.resuming) {
      this.metrics.downtimeTotal += gap;
      this.metrics.lastGap = gap;
      this.metrics.gaps.push(gap);
      if (this.metrics.gaps.length > 1000) this.metrics.gaps.splice(0, 500);
    }
    if (this.policy.stableAfter > 0) this.setTimer(T_STABLE, this.policy.stableAfter);
    else this.outageFailures = 0;
    if (this.resuming) {
      this.metrics.resumesSucceeded += 1;
    } else {
      const reason = this.resetReason;
      this.resetReason = null;
      const seed = this.transcript.seedMessage();
      if (seed !== null) {
        this.sendWire(JSON.stringify(seed));
        this.seedState = "sent";
      }
      if (reason !== null || seed !== null) {
        this.emit({
          type: "contextReset",
          reason: reason ?? "a fresh session was started",
          seededTurns: seed !== null ? seed.clientContent.turns.length : 0,
        });
      }
    }
    const replayed = this.flush();
    this.reportAudioDrops(); // the outage is over: one report for what it cost
    if (this.resuming) this.emit({ type: "resumed", attempt: this.attemptId, gap, replayed });
    else this.emit({ type: "connected", attempt: this.attemptId, first });
  }

  flush() {
    const [items, stale] = this.outbox.takeAll(this.now);
    this.reportDropped(stale, "audio older than its time to live");
    let replayed = 0;
    for (const item of items) {
      if (item.wasSent) {
        replayed += 1;
        this.metrics.messagesReplayed += 1;
        this.metrics.audioMsReplayed += item.audioMs;
      }
      this.write(item);
    }
    return replayed;
  }

  /** Send `item` on the live connection and record it. @param {Outgoing} item */
  write(item) {
    // To a tunnelproof relay each message goes out named (a replay keeps its name), so the
    // relay drops exactly the replays of what it has (protocol/relay_setup.py).
    const named = this.serverKeepsTurns;
    this.sendWire(named ? `${NAME_PREFIX}${this.instanceName}:${item.seq}",${item.wire.slice(1)}` : item.wire);
    this.lastWritten = item;
    if (!item.wasSent || this.unwritten.has(item.seq)) {
      this.unwritten.delete(item.seq);
      for (const t of item.turns) this.transcript.add(t.role, t.text);
    }
    if (item.kind === "tool_response") {
      for (const id of item.toolIds) this.openToolCalls.delete(id);
      settleToolCalls(this.settledToolCalls, item.toolIds, "it was answered already");
    }
    if (item.expectsReply) {
      // Asking again never postpones a reply already owed: questions sent closer together
      // than replyTimeout would keep a blackholed link looking alive.
      this.setTimer(T_REPLY, this.watchdogs.replyTimeout, true);
      const text = item.turns
        .filter((t) => t.role === "user")
        .map((t) => t.text)
        .join(" ");
      if (text) {
        this.questionTexts.set(item.seq, text);
        // Bounded: the oldest are long answered.
        if (this.questionTexts.size > 256) this.questionTexts.delete(Math.min(...this.questionTexts.keys()));
      }
    }
    this.turns.sent(item.seq, item.expectsReply, item.audioMs > 0);
    // Items evicted from the replay record were delivered or are remembered as unverified
    // audio; they only lose their replay insurance, so they are not reported here.
    this.outbox.markSent(item);
  }

  /** @param {Extract<ServerMessage, {kind: "serverContent"}>} content */
  onContent(content) {
    let output = false;
    if (content.inputTranscription !== null) {
      this.transcript.userTranscription(content.inputTranscription.text);
      this.emit({ type: "inputTranscript", text: content.inputTranscription.text, finished: content.inputTranscription.finished });
    }
    for (const part of content.parts) {
      if (part.thought) continue;
      if (part.text !== null) {
        output = true;
        this.transcript.modelOutput(part.text);
        this.emit({ type: "text", text: part.text });
      } else if (part.inlineData !== null && part.inlineData.mimeType.startsWith("audio/pcm")) {
        output = true;
        let pcm;
        try {
          pcm = base64ToBytes(part.inlineData.data);
        } catch (err) {
          if (!(err instanceof ProtocolError)) throw err;
          this.metrics.protocolErrors += 1;
          this.emit({ type: "protocolViolation", message: err.message, size: err.size });
          continue;
        }
        this.emit({ type: "audio", pcm, mimeType: part.inlineData.mimeType });
      }
    }
    if (content.outputTranscription !== null) {
      output = true;
      if ((this.config.modality ?? "AUDIO") === "AUDIO") this.transcript.modelOutput(content.outputTranscription.text);
      this.emit({ type: "outputTranscript", text: content.outputTranscription.text, finished: content.outputTranscription.finished });
    }
    if (output) {
      this.turns.outputArrived();
      if (this.seedState) this.seedState = "read"; // the server answers only after reading a seed
      this.handleCurrent = false;
    }
    if (content.interrupted) {
      this.turns.interrupted();
      this.transcript.commitModel();
      this.emit({ type: "interrupted" });
    }
    if (content.generationComplete) {
      this.turns.generationCompleted(); // playback may run before turnComplete: quiet is normal now
      this.emit({ type: "generationComplete" });
    }
    if (content.interactionStatus !== null) this.turns.interactionReported(content.interactionStatus);
    if (content.turnComplete) {
      const answered = this.turns.answering;
      if (answered !== null) this.forgetQuestionsUpTo(answered);
      this.toolTurnAnswered(answered, this.turns.cut); // without a tool call
      this.turns.turnCompleted();
      this.handleCurrent = false;
      this.cancelTimer(T_REPLY);
      this.handleAtTurnEnd = this.handleValue;
      this.transcript.commitModel();
      this.emit({ type: "turnComplete", reason: content.turnCompleteReason });
    }
    this.restore.content(content, this.lastWritten === null ? null : this.lastWritten.seq);
  }

  /** @param {boolean} resumable @param {string|null} newHandle */
  onResumptionUpdate(resumable, newHandle) {
    if (!resumable || newHandle === null) {
      this.handleCurrent = false; // never replaces the handle (contract 2)
      return;
    }
    this.handleValue = newHandle;
    this.handleCurrent = true;
    if (this.seedState === "read") this.seedState = "";
    this.callsSinceHandle = [];
    this.restore.handleIssued();
    this.confirmDelivery();
    this.saveHandle();
  }

  // -- goAway ----------------------------------------------------------------------------------

  /** @param {number|null} left */
  onGoAway(left) {
    this.metrics.goAways += 1;
    // Budget spent: stay until the server closes, so an answer can still come; the timer
    // is only a backstop (Python: SessionBookkeeping._on_go_away).
    const delay =
      this.quickHandovers < this.policy.handoverBudget
        ? left !== null
          ? Math.max(0, left - this.watchdogs.goAwayMargin)
          : 0
        : (left ?? 0) + this.watchdogs.closeTimeout;
    if (this.goAwaySeen && this.timers.has(T_GOAWAY)) return; // never moves the deadline later
    this.goAwaySeen = true;
    this.handoverPending = true;
    this.setTimer(T_GOAWAY, delay);
    this.emit({ type: "goAway", timeLeft: left, handoverBy: this.now + delay });
    const usable = this.credential !== null && usableForNewSession(this.credential, this.wall);
    if (!usable && this.request === null) this.prefetch();
  }

  atTurnBoundary() {
    if (this.phase !== "connected" || this.turns.busy || this.openToolCalls.size) return false;
    if (this.turns.interactionInProgress) return false; // turnComplete is not idle on background-reasoning models
    // Wait for a handle that includes the last turn, or the resume would rewind it.
    return this.handleCurrent || !this.resumptionEnabled;
  }

  /** A turn ended and the resumable handle that holds it has not come yet. */
  turnHandleDue() {
    if (this.phase !== "connected" || !this.resumptionEnabled) return false;
    return !this.handleCurrent && !this.turns.busy && this.openToolCalls.size === 0;
  }

  maybeHandover() {
    // Over the handover budget the session stays until the server closes (the goAway timer
    // is a backstop); within it, it leaves at a turn boundary with the next token in hand, so a token
    // service's blip costs no gap while the deadline allows.
    if (!(this.handoverPending && this.atTurnBoundary())) return;
    if (this.timers.has(T_HANDLE_GRACE)) {
      this.handover("goAway handover"); // past the deadline: leave now, token or not
    } else if (this.quickHandovers < this.policy.handoverBudget) {
      if (this.credential !== null && usableForNewSession(this.credential, this.wall)) {
        this.handover("goAway handover");
      } else if (this.request === null && !this.timers.has(T_PREFETCH)) {
        this.prefetch();
      }
    }
  }

  prefetch() {
    this.fetchToken(true);
  }

  /**
   * Close at a turn boundary and resume (at once within the handover budget).
   * @param {string} reason the close frame's reason
   * @param {string} [why] the `reconnecting` event's reason
   */
  handover(reason, why = "planned handover after goAway") {
    // A handover of a young connection counts against the budget; one that served
    // stableAfter starts the count over (Python: RetryBudget.handed_over).
    this.handedOver(this.connectedAt !== null ? this.now - this.connectedAt : 0);
    this.handoverReason = why;
    this.handoverPending = false;
    this.cancelTimer(T_GOAWAY, T_HANDLE_GRACE, T_REPLY, T_STABLE, T_LINK, T_PREFETCH);
    this.phase = "closing";
    this.closePurpose = "handover";
    this.out.push({ type: "closeSocket", attempt: this.attemptId, code: 1000, reason });
    this.setTimer(T_CLOSE, this.watchdogs.closeTimeout);
  }

  /**
   * A planned handover of a connection that served `served` s: a young one counts against
   * the budget, one that served stableAfter starts the count over. A close by the server
   * after goAway counts too, so a server that closes at once after every goAway drives no
   * hot loop either (Python: RetryBudget.handed_over).
   * @param {number} served
   */
  handedOver(served) {
    this.quickHandovers = served < this.policy.stableAfter ? this.quickHandovers + 1 : 0;
  }

  /**
   * Reconnect after a handover: at once within the budget, then backed off like server
   * errors, so a server that sends goAway on every connection drives no hot loop (Python:
   * RetryBudget.after_handover).
   * @param {string} reason
   */
  handoverDone(reason) {
    const over = this.quickHandovers - this.policy.handoverBudget;
    const delay = over > 0 ? this.serverDelay(over - 1) : 0;
    this.phase = "waiting";
    this.emit({ type: "reconnecting", delay, attempt: this.outageAttempts + 1, reason, kind: "server", planned: true });
    if (delay > 0) this.setTimer(T_RETRY, delay);
    else this.startAttempt(); // at once: no timer round trip
  }

  /**
   * The backoff after the `failures`-th (0-based) consecutive server failure: full jitter
   * under an exponential ceiling; Retry-After is a floor (plus a little jitter).
   * @param {number} failures @param {number|null} [retryAfter]
   */
  serverDelay(failures, retryAfter = null) {
    const p = this.policy;
    const ceiling = Math.min(p.maxDelay, p.baseDelay * p.multiplier ** Math.min(failures, 60));
    let delay = this.random() * ceiling; // full jitter
    if (retryAfter !== null && retryAfter > 0) delay = Math.max(delay, retryAfter + this.random() * p.baseDelay);
    return delay;
  }

  /**
   * The wait after a shed answer (429/503 with Retry-After): what the server asked, never
   * less than SHED_MIN_DELAY, plus jitter. A whole number of seconds (Retry-After) is coarse:
   * the slot is somewhere in the second after it, so up to baseDelay of jitter. A fractional
   * one (retry-after-ms) is this client's own slot: a tenth of it (20 ms to baseDelay).
   * @param {number} retryAfter
   */
  shedDelay(retryAfter) {
    const wait = Math.max(SHED_MIN_DELAY, retryAfter);
    const spread = Number.isInteger(retryAfter)
      ? this.policy.baseDelay
      : Math.min(this.policy.baseDelay, Math.max(SHED_MIN_JITTER, SHED_JITTER_FRACTION * wait));
    return wait + this.random() * spread;
  }

  /** Reconnect with no backoff (an expected close, a fresh-session fallback). @param {string} reason */
  reconnectNow(reason) {
    this.phase = "waiting";
    this.emit({ type: "reconnecting", delay: 0, attempt: this.outageAttempts + 1, reason, kind: "server", planned: true });
    this.startAttempt();
  }

  // -- failures --------------------------------------------------------------------------------

  /** @param {string} reason @param {number|null} [retryAfter] */
  serverFailure(reason, retryAfter = null) {
    if (retryAfter !== null && retryAfter > 0 && this.policy.shedIsWait) {
      // A shed answer (429/503 with Retry-After): a wait, not a failure against the caps,
      // so a herd is served in turn instead of giving up.
      this.metrics.shedWaits += 1;
      this.lastFailureOffline = false;
      this.scheduleRetry(this.shedDelay(retryAfter), "server", reason);
      return;
    }
    this.metrics.serverFailures += 1;
    this.lastFailureOffline = false;
    const failures = this.outageFailures;
    this.sessionFailures += 1;
    const cap = this.policy.maxAttemptsPerOutage;
    if (cap !== null && failures >= cap) {
      this.giveUp(`gave up after ${failures + 1} failed attempts in a row (${reason})`);
      return;
    }
    const sessionCap = this.policy.maxAttemptsPerSession;
    if (sessionCap !== null && this.sessionFailures > sessionCap) {
      this.giveUp(`gave up after ${sessionCap} failed attempts this session (${reason})`);
      return;
    }
    const delay = this.serverDelay(failures, retryAfter);
    this.outageFailures = failures + 1;
    this.scheduleRetry(delay, "server", reason);
  }

  /**
   * An abrupt drop (no close frame, a reset, a dead link found by a watchdog) of a
   * connection that served `served` s: the first attempt goes at once and does not escalate
   * the next one; a quick drop goes at once only within immediateBudget per immediateWindow.
   * @param {string} reason @param {number} served
   */
  afterDrop(reason, served) {
    const p = this.policy;
    while (this.quickDrops.length && this.quickDrops[0] <= this.now - p.immediateWindow) this.quickDrops.shift();
    if (!(served >= p.healthyAfter || this.quickDrops.length < p.immediateBudget)) {
      this.afterQuickDrop(reason);
      return;
    }
    if (served < p.healthyAfter) this.quickDrops.push(this.now);
    this.outageFailures = 0; // a lost connection, not a failing server
    this.lastFailureOffline = false;
    this.metrics.immediateReconnects += 1;
    this.phase = "waiting";
    this.emit({ type: "reconnecting", delay: 0, attempt: this.outageAttempts + 1, reason, kind: "offline", planned: false });
    this.startAttempt();
  }

  /**
   * A quick drop beyond the budget: full jitter under dropMaxDelay, against the session cap
   * only, so a session is back within a second or two once a flapping link settles.
   * @param {string} reason
   */
  afterQuickDrop(reason) {
    const p = this.policy;
    if (p.dropMaxDelay === null || p.dropMaxDelay === undefined) {
      this.serverFailure(reason);
      return;
    }
    this.metrics.serverFailures += 1;
    this.lastFailureOffline = false;
    this.sessionFailures += 1;
    const sessionCap = p.maxAttemptsPerSession;
    if (sessionCap !== null && this.sessionFailures > sessionCap) {
      this.giveUp(`gave up after ${sessionCap} failed attempts this session (${reason})`);
      return;
    }
    const failures = this.outageFailures;
    this.outageFailures = failures + 1;
    const ceiling = Math.min(p.dropMaxDelay, p.baseDelay * p.multiplier ** Math.min(failures, 60));
    this.scheduleRetry(this.random() * ceiling, "server", reason);
  }

  /** A watchdog found the link dead: abort it and reconnect as after a drop. @param {string} reason */
  deadLink(reason) {
    this.metrics.deadLinksDetected += 1;
    const served = this.connectedAt !== null ? this.now - this.connectedAt : 0;
    this.abort("dead link");
    this.connectionGone(null, reason, false);
    this.afterDrop(reason, served);
  }

  /**
   * The driver's answer to checkLink: evidence that the link is alive or dead.
   * @param {number} attempt @param {boolean} alive @param {string} detail
   */
  onLinkChecked(attempt, alive, detail) {
    if (attempt !== this.attemptId || this.phase !== "connected" || !this.timers.has(T_LINK)) return;
    if (!alive) {
      this.deadLink(`dead link: ${detail}`);
      return;
    }
    this.cancelTimer(T_LINK);
    if (this.turns.owed) this.setTimer(T_REPLY, this.watchdogs.replyTimeout);
  }

  /**
   * A resume refused (the old socket may still be open): wait, keep the handle. Backed off
   * like a server failure but never more than REFUSAL_RETRY_CEILING apart; the whole wait
   * is bounded by staleSocketWait, so this cannot loop forever.
   * @param {string} reason
   */
  refusalFailure(reason) {
    this.metrics.serverFailures += 1;
    this.lastFailureOffline = false;
    const n = Math.max(0, this.resumeRefusals - 1);
    this.scheduleRetry(Math.min(REFUSAL_RETRY_CEILING, this.serverDelay(n)), "server", reason);
  }

  /** @param {string} reason */
  offlineFailure(reason) {
    this.metrics.offlineFailures += 1;
    this.lastFailureOffline = true;
    if (this.offlineSince === null) this.offlineSince = this.now;
    const limit = this.policy.maxOfflineSeconds;
    if (limit !== null && this.now - this.offlineSince >= limit) {
      this.giveUp(`the network has been gone for over ${limit.toFixed(0)} s (${reason})`);
      return;
    }
    // While the browser itself says offline, every probe would fail at once: wait for the
    // `online` event (which redials at once), with a slow probe in case it never comes.
    const delay = this.browserOffline
      ? this.policy.browserOfflineProbe
      : this.policy.offlineInterval + (this.random() * 2 - 1) * this.policy.offlineJitter;
    this.scheduleRetry(delay, "offline", reason);
  }

  /** @param {number} delay @param {"offline"|"server"} kind @param {string} reason */
  scheduleRetry(delay, kind, reason) {
    this.phase = "waiting";
    this.emit({ type: "reconnecting", delay, attempt: this.outageAttempts + 1, reason, kind, planned: false });
    this.setTimer(T_RETRY, delay);
  }

  /** @param {string} reason */
  giveUp(reason) {
    this.fail(verdict("retry", null, reason, `Reconnecting ${reason}; call resume() to try again.`));
  }

  /** @param {CloseVerdict} v */
  fail(v) {
    this.abort(`fatal: ${v.kind}`);
    this.cancelTimer(...this.timers.keys());
    if (this.request !== null) {
      this.out.push({ type: "cancelTokenFetch", request: this.request });
      this.request = null;
    }
    if (this.connectedAt !== null) this.connectionGone(v.code, v.reason, false);
    this.phase = "failed";
    this.releaseHeldRewind();
    this.reportAudioDrops();
    this.emit({ type: "failed", verdict: v, advice: v.advice });
  }

  /** Emit a held rewound: the resume was not intact, or the session ends. */
  releaseHeldRewind() {
    const held = this.heldRewind;
    this.heldRewind = null;
    if (held !== null) this.emit(held);
  }

  // -- timers ----------------------------------------------------------------------------------

  /** @param {string} name @param {number} serial */
  onTimer(name, serial) {
    if (this.timers.get(name) !== serial) return; // cancelled or replaced
    this.timers.delete(name);
    if (name === T_RETRY && this.phase === "waiting") {
      this.startAttempt();
    } else if (name === T_TOKEN && this.phase === "fetching" && this.request !== null) {
      this.out.push({ type: "cancelTokenFetch", request: this.request });
      this.request = null;
      this.tokenTimeoutsInRow += 1; // the next offline fetch may take longer
      this.offlineFailure("the token source did not answer in time");
    } else if (name === T_CONNECT && this.phase === "opening") {
      this.abort("connect timeout");
      this.offlineFailure("connect timeout");
    } else if (name === T_SETUP && this.phase === "setup") {
      this.metrics.deadLinksDetected += 1;
      this.abort("no setupComplete");
      this.connectionGone(null, "no setupComplete", false);
      this.serverFailure(`no setupComplete within ${this.watchdogs.setupTimeout} s`);
    } else if (name === T_REPLY && this.phase === "connected" && this.garbageSinceMessage) {
      // Only unreadable frames while a reply is owed: a broken server, not a thinking model.
      // Backed off like a server error (and no link check: those frames would pass it).
      this.metrics.deadLinksDetected += 1;
      this.abort("no reply");
      const reason = "only unreadable frames while a reply was due";
      this.connectionGone(null, reason, false);
      this.serverFailure(reason);
    } else if (name === T_REPLY && this.phase === "connected") {
      // Silence is not evidence (a model may think for minutes): ask the driver for some
      // (a frame received, the send buffer draining) within linkCheckTimeout.
      this.metrics.linkChecks += 1;
      this.out.push({ type: "checkLink", attempt: this.attemptId });
      this.setTimer(T_LINK, this.watchdogs.linkCheckTimeout);
    } else if (name === T_LINK && this.phase === "connected") {
      this.deadLink(
        `no sign of life within ${this.watchdogs.linkCheckTimeout} s of a link check (a reply was ${this.watchdogs.replyTimeout} s overdue)`,
      );
    } else if (name === T_PREFETCH && this.phase === "connected" && this.handoverPending) {
      if (this.request === null) this.prefetch();
    } else if (name === T_STABLE) {
      this.outageFailures = 0;
      this.quickHandovers = 0;
    } else if (name === T_GOAWAY && this.phase === "connected") {
      if (this.turnHandleDue()) {
        // The turn's handle comes some 20-70 ms after turnComplete: wait that long for it.
        this.setTimer(T_HANDLE_GRACE, this.watchdogs.handoverHandleGrace);
      } else {
        this.handover("goAway handover");
      }
    } else if (name === T_HANDLE_GRACE && this.phase === "connected") {
      this.handover("goAway handover");
    } else if (name === T_CLOSE && this.phase === "closing") {
      this.abort("close timeout");
      this.afterOurClose(null, "close timed out");
    }
  }

  // -- browser signals ------------------------------------------------------------------------

  /** `online`: the network is back. Redial at once instead of waiting out a timer. */
  onNetworkOnline() {
    this.browserOffline = false;
    if (this.phase === "waiting") {
      this.startAttempt();
    } else if (this.phase === "opening" && this.lastFailureOffline) {
      // An attempt started inside the outage may hang until its SYN retransmit: a fresh
      // one on the returned network is faster (Ably does the same).
      this.abort("network changed");
      this.startAttempt();
    }
  }

  /**
   * The tab is visible again after `hiddenFor` seconds. Timers were throttled or frozen
   * while hidden, so a waiting retry runs now; a connected link that was hidden long is
   * checked by resuming at a turn boundary (a browser cannot probe a Live socket: the
   * protocol has no message that draws a reply without touching the conversation).
   * @param {number} hiddenFor
   */
  onPageShown(hiddenFor) {
    if (this.phase === "waiting") {
      this.startAttempt();
      return;
    }
    if (this.phase !== "connected" || hiddenFor < this.watchdogs.hiddenRecheckAfter) return;
    const quietFor = this.lastFrameAt === null ? Infinity : this.now - this.lastFrameAt;
    if (quietFor < this.watchdogs.hiddenRecheckAfter) return; // frames came while hidden: alive
    // A turn's handle still due after this much quiet never came (Google sends it 20-70 ms
    // after turnComplete): the link is what is in doubt, so check it (as Python hands over
    // after its handle grace).
    if (this.atTurnBoundary() || this.turnHandleDue()) {
      const why = `the tab was hidden ${hiddenFor.toFixed(0)} s with a quiet link: resuming to check it`;
      this.handover("link check after the tab was hidden", why);
    }
  }

  /**
   * The driver saw the socket's send buffer not drain at all for `seconds`: the kernel
   * cannot deliver (a half-open link). Found whether or not a reply is due, so a user
   * talking into a dead link is not left talking.
   * @param {number} attempt @param {number} seconds
   */
  onSendStalled(attempt, seconds) {
    if (attempt !== this.attemptId || (this.phase !== "connected" && this.phase !== "setup")) return;
    this.metrics.deadLinksDetected += 1;
    const reason = `the send buffer did not drain for ${seconds.toFixed(1)} s`;
    this.abort(reason);
    this.connectionGone(null, reason, false);
    this.offlineFailure(reason);
  }

  // -- app requests --------------------------------------------------------------------------

  onCloseRequested() {
    if (this.phase === "closed" || this.phase === "idle" || (this.phase === "closing" && this.closePurpose === "user")) {
      if (this.phase === "idle") {
        this.phase = "closed";
        this.emit({ type: "closed" });
      }
      return;
    }
    this.settleAtClose();
    this.reportDropped(this.outbox.clear(), "the session was closed");
    if (this.request !== null) {
      this.out.push({ type: "cancelTokenFetch", request: this.request });
      this.request = null;
    }
    this.cancelTimer(...this.timers.keys());
    if (this.socketLive && (this.phase === "setup" || this.phase === "connected" || this.phase === "closing")) {
      this.phase = "closing";
      this.closePurpose = "user";
      this.out.push({ type: "closeSocket", attempt: this.attemptId, code: 1000, reason: "client closed" });
      this.setTimer(T_CLOSE, this.watchdogs.closeTimeout);
      return;
    }
    this.abort("client closed");
    this.finishClose();
  }

  finishClose() {
    this.cancelTimer(...this.timers.keys());
    this.phase = "closed";
    this.releaseHeldRewind();
    this.reportAudioDrops();
    this.emit({ type: "closed" });
  }

  onResumeRequested() {
    if (this.phase === "failed") {
      this.outageFailures = 0;
      this.sessionFailures = 0;
      this.offlineSince = null;
      this.authRetryUsed = false;
      this.phase = "waiting";
      if (this.lostAt === null) this.lostAt = this.now;
      this.startAttempt();
    } else if (this.phase === "waiting") {
      this.startAttempt();
    }
  }

  /** The app asked for a fresh server session re-seeded from its transcript. */
  onReseedRequested() {
    const stopped = this.phase === "idle" || this.phase === "closed" || (this.phase === "closing" && this.closePurpose === "user");
    if (!stopped) this.dropHandle("the app asked for a fresh session re-seeded from its transcript");
    if (this.phase === "setup" || this.phase === "connected") {
      this.handover("reseed", "the app asked for a fresh session"); // the close ends in a fresh, re-seeded session
    } else if ((this.phase === "fetching" || this.phase === "opening") && this.handleValue === null && this.hadSession) {
      this.prepareFreshSession(); // this attempt's setup carries no handle
    }
  }

  // -- sends -----------------------------------------------------------------------------------

  /** @param {Outgoing} item @returns {SendResult} */
  accept(item) {
    if (this.phase === "closed" || (this.phase === "closing" && this.closePurpose === "user")) {
      this.metrics.messagesDropped += 1;
      return sendResult("dropped", item.seq, "the session is closed");
    }
    // Refused at the call (Python: screening.screen): larger than the outbox, or an answer
    // to no open tool call (Google closes 1007 on it, failing the session).
    const queued = new Set(this.outbox.pending.flatMap((i) => (i.kind === "tool_response" ? i.toolIds : [])));
    const refused =
      oversized(item, this.outbox.limits) ??
      (item.kind === "tool_response" ? toolAnswerRefusal(item, this.openToolCalls, this.cancelledToolIds, this.settledToolCalls, queued) : null);
    if (refused !== null) {
      this.metrics.messagesDropped += 1;
      if (item.kind === "audio") this.metrics.audioMsDropped += item.audioMs;
      return sendResult("dropped", item.seq, refused);
    }
    if (item.kind === "tool_response") {
      const cancelled = new Set(item.toolIds.filter((i) => this.cancelledToolIds.has(i)));
      if (cancelled.size) {
        const trimmed = withoutToolIds(item, cancelled);
        if (trimmed === null) {
          this.metrics.messagesDropped += 1;
          return sendResult(
            "dropped",
            item.seq,
            `the tool call was cancelled by a reconnect (the resumed session never saw ${[...cancelled].sort().join(", ")})`,
          );
        }
        item = trimmed;
      }
    }
    if (this.phase === "connected" && !this.outbox.pending.length) {
      this.write(item);
      return sendResult("sent", item.seq);
    }
    const [result, dropped] = this.outbox.enqueue(item, this.now);
    this.reportDropped(dropped, "outbox bound reached or audio too old");
    if (result.status === "dropped") {
      this.metrics.messagesDropped += 1;
      if (item.kind === "audio") this.metrics.audioMsDropped += item.audioMs;
    }
    return result;
  }
}
