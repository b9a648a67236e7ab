// tunnelproof browser client: the outbox and the transcript (no I/O).
//
// Ports of tunnelproof/session/outbox.py and transcript.py. Two queues: `pending` (not
// sent on the current connection; flushed only after setupComplete; bounded: audio by
// duration and age, the rest by count and bytes) and `unconfirmed` (sent since the newest
// resumable handle; replayed after a resume, because the handle's state lacks them).
// Nothing leaves silently: every drop is returned so the machine reports it.
//
// Audio is accounted for to the millisecond: a chunk ends delivered, replayed or reported
// dropped. `unverified` keeps the seq and duration of chunks that left the replay window
// (unconfirmed holds at most maxAudioMs of audio) before any evidence that the server holds
// them: the next confirmation makes them delivered, a drop first makes them dropped.
// AudioDropLedger gathers the audio dropped during one outage, reported as one sendDropped
// with the outage's total duration, not one event per 20 ms chunk.

import { getField, toCamel } from "./protocol.js";

/** @typedef {import("./protocol.js").Json} Json */
/** @typedef {"audio"|"text"|"client_content"|"tool_response"|"realtime"|"raw"} MessageKind */
/** @typedef {{role: "user"|"model", text: string}} Turn */

/**
 * What one send* call did. Never silent.
 * @typedef {{status: "sent"|"queued"|"dropped", seq: number, reason: string|null}} SendResult
 */

/**
 * @typedef {object} Outgoing
 * @property {number} seq
 * @property {MessageKind} kind
 * @property {Json} message
 * @property {string} wire
 * @property {number} createdAt
 * @property {number} audioMs
 * @property {string[]} toolIds
 * @property {boolean} expectsReply
 * @property {Turn[]} turns
 * @property {boolean} wasSent
 */

/**
 * @typedef {object} OutboxLimits
 * @property {number} maxAudioMs queued audio beyond this is dropped oldest-first
 * @property {number} audioTtl seconds; older queued audio is dropped, not sent
 * @property {number} maxMessages queued non-audio messages
 * @property {number} maxBytes queued non-audio bytes
 * @property {number} maxUnconfirmedMessages sent-but-unconfirmed messages kept for replay
 */

/** @type {OutboxLimits} */
export const DEFAULT_LIMITS = Object.freeze({
  maxAudioMs: 5000,
  audioTtl: 5,
  maxMessages: 256,
  maxBytes: 1 << 20,
  maxUnconfirmedMessages: 512,
});

/** The largest client frame known to be accepted (the emulator's; Python: MAX_CLIENT_FRAME_BYTES). */
export const MAX_CLIENT_FRAME_BYTES = 32 * 1024 * 1024;

/**
 * Throw a RangeError for a bound that is zero, negative, not finite or (counts) not an
 * integer, or a `maxBytes` above MAX_CLIENT_FRAME_BYTES (Python: OutboxLimits.__post_init__).
 * A zero bound refused every send; a NaN one compared false and let the queue grow unbounded.
 * @param {OutboxLimits} limits
 */
export function checkLimits(limits) {
  for (const name of /** @type {const} */ (["maxAudioMs", "audioTtl"])) {
    const value = limits[name];
    if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
      throw new RangeError(`OutboxLimits.${name} must be a positive number, got ${value}`);
    }
  }
  for (const name of /** @type {const} */ (["maxMessages", "maxBytes", "maxUnconfirmedMessages"])) {
    const value = limits[name];
    if (!Number.isInteger(value) || value < 1) throw new RangeError(`OutboxLimits.${name} must be an integer >= 1, got ${value}`);
  }
  if (limits.maxBytes > MAX_CLIENT_FRAME_BYTES) {
    throw new RangeError(
      `OutboxLimits.maxBytes must be <= ${MAX_CLIENT_FRAME_BYTES} (the largest client frame the server is known to accept), got ${limits.maxBytes}`,
    );
  }
}

/**
 * Why `item` alone exceeds the outbox's bounds, or null: it could never be queued or kept
 * for replay, so it is refused in every phase (Python: screening.oversized).
 * @param {Outgoing} item @param {OutboxLimits} limits @returns {string|null}
 */
export function oversized(item, limits) {
  if (item.kind === "audio") {
    if (item.audioMs <= limits.maxAudioMs) return null;
    return `audio chunk of ${Math.round(item.audioMs)} ms is longer than the outbox holds (max_audio_ms=${limits.maxAudioMs}); send shorter chunks`;
  }
  if (item.wire.length <= limits.maxBytes) return null;
  return `message of ${item.wire.length} bytes is larger than the outbox holds (max_bytes=${limits.maxBytes}): it could never be queued or replayed`;
}

/**
 * Why an answer to `item.toolIds` must not go out, or null (Python: ToolCalls.refusal).
 * Google closes 1007 on a toolResponse for an id with no open call (never made, answered
 * already, withdrawn), failing the session. Ids a reconnect cancelled pass here: the
 * caller strips them. `queued`: ids answered by a message still in the outbox.
 * @param {Outgoing} item @param {Set<string>} open @param {Set<string>} cancelled
 * @param {Map<string, string>} settled closed id -> why @param {Set<string>} queued
 * @returns {string|null}
 */
export function toolAnswerRefusal(item, open, cancelled, settled, queued) {
  const body = item.message[Object.keys(item.message)[0]];
  const responses = getField(body, "functionResponses");
  const count = Array.isArray(responses) ? responses.length : 0;
  if (!item.toolIds.length || item.toolIds.length !== count) {
    return "a toolResponse answers one or more tool calls, each by its toolCall's id";
  }
  const seen = new Set();
  for (const id of item.toolIds) {
    if (seen.has(id)) return `it answers tool call '${id}' twice`;
    seen.add(id);
    if (queued.has(id)) return `tool call '${id}' is answered already (by a queued message)`;
    if (!open.has(id) && !cancelled.has(id)) return `no open tool call '${id}': ${settled.get(id) ?? "the model never made it"}`;
  }
  return null;
}

/**
 * Remember why these calls closed (for the refusal reason); the first reason stands. Bounded.
 * @param {Map<string, string>} settled @param {Iterable<string>} ids @param {string} why
 */
export function settleToolCalls(settled, ids, why) {
  for (const id of ids) if (!settled.has(id)) settled.set(id, why);
  if (settled.size > 4096) for (const old of [...settled.keys()].slice(0, -2048)) settled.delete(old);
}

/** @param {SendResult["status"]} status @param {number} seq @param {string|null} [reason] @returns {SendResult} */
export function sendResult(status, seq, reason = null) {
  return { status, seq, reason };
}

/** @param {unknown} raw @returns {Turn[]} */
function turnsOf(raw) {
  /** @type {Turn[]} */
  const out = [];
  if (!Array.isArray(raw)) return out;
  for (const turn of raw) {
    if (typeof turn !== "object" || turn === null) continue;
    const role = getField(turn, "role") === "model" ? "model" : "user";
    const parts = getField(turn, "parts");
    const texts = Array.isArray(parts)
      ? parts.filter((p) => typeof p === "object" && p !== null && typeof getField(p, "text") === "string").map((p) => String(getField(p, "text")))
      : [];
    if (texts.length) out.push({ role, text: texts.join("") });
  }
  return out;
}

/**
 * Classify a client message. Throws TypeError for a setup or a message that does not hold
 * exactly one kind (programming errors, not network conditions).
 * @param {number} seq @param {Json} message @param {number} now
 * @returns {Outgoing}
 */
export function makeOutgoing(seq, message, now) {
  const keys = Object.keys(message);
  if (keys.length !== 1) throw new TypeError(`a client message holds exactly one kind, got ${JSON.stringify(keys)}`);
  const kindName = toCamel(keys[0]);
  const body = message[keys[0]];
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw new TypeError(`${kindName} must be an object`);
  if (kindName === "setup") throw new TypeError("setup is sent by the session itself; do not send it");
  const wire = JSON.stringify(message);
  /** @type {Outgoing} */
  const base = {
    seq,
    kind: "raw",
    message,
    wire,
    createdAt: now,
    audioMs: 0,
    toolIds: [],
    expectsReply: false,
    turns: [],
    wasSent: false,
  };
  if (kindName === "realtimeInput") {
    const audio = getField(body, "audio");
    if (typeof audio === "object" && audio !== null) {
      const b64 = String(getField(audio, "data") ?? "");
      const mime = String(getField(audio, "mimeType") ?? "");
      const m = /rate=(\d+)/.exec(mime);
      const rate = m ? Number(m[1]) : 16000;
      const nbytes = Math.floor((b64.length * 3) / 4) - (b64.length - b64.replace(/=+$/, "").length);
      return { ...base, kind: "audio", audioMs: (nbytes / (2 * rate)) * 1000 };
    }
    const text = getField(body, "text");
    if (typeof text === "string") {
      return { ...base, kind: "text", expectsReply: true, turns: [{ role: "user", text }] };
    }
    const endsTurn = getField(body, "activityEnd") != null || Boolean(getField(body, "audioStreamEnd"));
    return { ...base, kind: "realtime", expectsReply: endsTurn };
  }
  if (kindName === "clientContent") {
    return {
      ...base,
      kind: "client_content",
      expectsReply: Boolean(getField(body, "turnComplete")),
      turns: turnsOf(getField(body, "turns")),
    };
  }
  if (kindName === "toolResponse") {
    const responses = getField(body, "functionResponses");
    const ids = Array.isArray(responses)
      ? responses.filter((r) => typeof r === "object" && r !== null && getField(r, "id")).map((r) => String(getField(r, "id")))
      : [];
    return { ...base, kind: "tool_response", toolIds: ids, expectsReply: true };
  }
  return base;
}

/**
 * `item` minus the function responses answering `ids`; null if none is left.
 * @param {Outgoing} item @param {Set<string>} ids @returns {Outgoing|null}
 */
export function withoutToolIds(item, ids) {
  if (item.kind !== "tool_response" || !item.toolIds.some((i) => ids.has(i))) return item;
  const key = Object.keys(item.message)[0];
  const body = item.message[key];
  const responses = (getField(body, "functionResponses") ?? []).filter(
    (/** @type {any} */ r) => !(typeof r === "object" && r !== null && ids.has(String(getField(r, "id")))),
  );
  if (!responses.length) return null;
  const message = { [key]: { ...body, functionResponses: responses } };
  return { ...item, message, wire: JSON.stringify(message), toolIds: item.toolIds.filter((i) => !ids.has(i)) };
}

/** A chunk that left the replay window unconfirmed: its seq and duration only. @typedef {{seq: number, audioMs: number}} SentAudio */

/**
 * Beyond this many unverified chunks (about an hour of 20 ms chunks with no confirmation at
 * all) the oldest are taken as delivered: memory stays bounded on endless monologues.
 */
export const MAX_UNVERIFIED = 200_000;

/** Audio dropped during one outage, reported once when the outage ends (Python: AudioDropLedger). */
export class AudioDropLedger {
  constructor() {
    /** @type {number[]} */
    this.seqs = [];
    this.audioMs = 0;
    /** @type {string[]} */
    this.reasons = [];
  }

  /** Record dropped chunks and why. @param {Iterable<number>} seqs @param {number} audioMs @param {string} reason */
  add(seqs, audioMs, reason) {
    const before = this.seqs.length;
    this.seqs.push(...seqs);
    if (this.seqs.length === before) return;
    this.audioMs += audioMs;
    if (!this.reasons.includes(reason)) this.reasons.push(reason);
  }

  /** `[seqs, audioMs, reason]` of everything recorded, and start over. @returns {[number[], number, string]|null} */
  take() {
    if (!this.seqs.length) return null;
    /** @type {[number[], number, string]} */
    const out = [this.seqs, this.audioMs, this.reasons.join("; ")];
    this.seqs = [];
    this.audioMs = 0;
    this.reasons = [];
    return out;
  }
}

/** The two bounded queues described at the top of this file. */
export class Outbox {
  /** @param {OutboxLimits} [limits] */
  constructor(limits = DEFAULT_LIMITS) {
    checkLimits(limits);
    this.limits = limits;
    /** @type {Outgoing[]} */
    this.pending = [];
    /** @type {Outgoing[]} */
    this.unconfirmed = [];
    /** Chunks sent beyond the replay window since the last confirmation. @type {SentAudio[]} */
    this.unverified = [];
    this.unconfirmedAudio = 0; // running total: markSent runs per 20 ms audio chunk
  }

  pendingAudioMs() {
    return this.pending.reduce((s, i) => s + (i.kind === "audio" ? i.audioMs : 0), 0);
  }

  /** @returns {[number, number]} (count, bytes) of queued non-audio messages */
  pendingOther() {
    let count = 0;
    let size = 0;
    for (const i of this.pending) {
      if (i.kind !== "audio") {
        count += 1;
        size += i.wire.length;
      }
    }
    return [count, size];
  }

  unconfirmedAudioMs() {
    return this.unconfirmedAudio;
  }

  recount() {
    this.unconfirmedAudio = this.unconfirmed.reduce((s, i) => s + i.audioMs, 0);
  }

  /** @param {Outgoing} item @param {number} now @returns {[SendResult, Outgoing[]]} */
  enqueue(item, now) {
    const dropped = this.expireAudio(now);
    if (item.kind === "audio") {
      if (item.audioMs > this.limits.maxAudioMs) return [sendResult("dropped", item.seq, "audio chunk longer than the outbox"), dropped];
      let total = this.pendingAudioMs();
      while (total + item.audioMs > this.limits.maxAudioMs) {
        const oldest = this.popOldestAudio();
        total -= oldest.audioMs;
        dropped.push(oldest);
      }
      this.pending.push(item);
      return [sendResult("queued", item.seq), dropped];
    }
    const [count, size] = this.pendingOther();
    if (count + 1 > this.limits.maxMessages || size + item.wire.length > this.limits.maxBytes) {
      return [sendResult("dropped", item.seq, "outbox full"), dropped];
    }
    this.pending.push(item);
    return [sendResult("queued", item.seq), dropped];
  }

  popOldestAudio() {
    const index = this.pending.findIndex((i) => i.kind === "audio");
    if (index < 0) throw new Error("no audio to drop");
    return this.pending.splice(index, 1)[0];
  }

  /** Drop queued audio older than the TTL. @param {number} now */
  expireAudio(now) {
    /** @type {Outgoing[]} */
    const stale = [];
    for (const item of this.pending) {
      if (now - item.createdAt <= this.limits.audioTtl) break;
      if (item.kind === "audio") stale.push(item);
    }
    if (stale.length) this.pending = this.pending.filter((i) => !stale.includes(i));
    return stale;
  }

  /** Empty `pending` for sending. @param {number} now @returns {[Outgoing[], Outgoing[]]} */
  takeAll(now) {
    const dropped = this.expireAudio(now);
    const items = this.pending;
    this.pending = [];
    return [items, dropped];
  }

  /**
   * Record `item` as sent and unconfirmed; returns items too old to keep for replay (their
   * audio is remembered in `unverified`, never forgotten).
   * @param {Outgoing} item @returns {Outgoing[]}
   */
  markSent(item) {
    this.unconfirmed.push({ ...item, wasSent: true });
    /** @type {Outgoing[]} */
    const evicted = [];
    // Audio: keep only as much as the outbox could replay.
    this.unconfirmedAudio += item.audioMs;
    while (this.unconfirmedAudio > this.limits.maxAudioMs + 1e-6) {
      const index = this.unconfirmed.findIndex((i) => i.kind === "audio");
      if (index < 0) {
        this.unconfirmedAudio = 0;
        break;
      }
      const [old] = this.unconfirmed.splice(index, 1);
      this.unconfirmedAudio -= old.audioMs;
      evicted.push(old);
      this.remember(old);
    }
    while (this.unconfirmed.length > this.limits.maxUnconfirmedMessages) {
      const oldest = /** @type {Outgoing} */ (this.unconfirmed.shift());
      this.unconfirmedAudio -= oldest.audioMs;
      evicted.push(oldest);
      if (oldest.kind === "audio") this.remember(oldest);
    }
    return evicted;
  }

  /** @param {Outgoing} item */
  remember(item) {
    this.unverified.push({ seq: item.seq, audioMs: item.audioMs });
    if (this.unverified.length > MAX_UNVERIFIED) this.unverified.shift();
  }

  /**
   * Chunks sent beyond the replay window since the last confirmation (and forget them);
   * with `before`, only those with a lower seq.
   * @param {number|null} [before] @returns {SentAudio[]}
   */
  takeUnverified(before = null) {
    if (before === null) {
      const items = this.unverified;
      this.unverified = [];
      return items;
    }
    let count = 0;
    while (count < this.unverified.length && this.unverified[count].seq < before) count += 1;
    return this.unverified.splice(0, count);
  }

  /**
   * A resumable handle arrived: the server holds what was sent before the `keepLast`
   * newest sends. Returns the items confirmed, oldest first.
   * @param {number} [keepLast] @returns {Outgoing[]}
   */
  confirm(keepLast = 0) {
    const keep = Math.max(0, keepLast);
    if (this.unconfirmed.length <= keep) return [];
    const confirmed = this.unconfirmed.slice(0, this.unconfirmed.length - keep);
    this.unconfirmed = this.unconfirmed.slice(this.unconfirmed.length - keep);
    this.recount();
    return confirmed;
  }

  /** Put unconfirmed messages back in front of `pending`. @param {number} now @returns {Outgoing[]} dropped */
  requeueUnconfirmed(now) {
    this.pending = [...this.unconfirmed, ...this.pending];
    this.unconfirmed = [];
    this.unconfirmedAudio = 0;
    const dropped = this.expireAudio(now);
    while (this.pendingAudioMs() > this.limits.maxAudioMs) dropped.push(this.popOldestAudio());
    // Non-audio over the bounds: drop the newest first, as a full outbox refuses a new send.
    // What the server gets stays a prefix of what the app sent; dropping the oldest replays
    // instead cut the conversation's start (a turn whose answer the app already had,
    // unconfirmed because its handle comes ~40 ms after turnComplete).
    for (;;) {
      const [count, size] = this.pendingOther();
      if (count <= this.limits.maxMessages && size <= this.limits.maxBytes) break;
      let index = this.pending.length - 1;
      while (index >= 0 && this.pending[index].kind === "audio") index -= 1;
      dropped.push(this.pending.splice(index, 1)[0]);
    }
    return dropped;
  }

  /** @param {(item: Outgoing) => boolean} predicate @returns {Outgoing[]} */
  removeWhere(predicate) {
    const removed = [...this.unconfirmed, ...this.pending].filter(predicate);
    if (removed.length) {
      this.pending = this.pending.filter((i) => !removed.includes(i));
      this.unconfirmed = this.unconfirmed.filter((i) => !removed.includes(i));
      this.recount();
    }
    return removed;
  }

  /** Strip answers to `ids` (tool calls the next server state never saw). @param {Set<string>} ids */
  dropToolAnswers(ids) {
    /** @type {Outgoing[]} */
    const dropped = [];
    /** @param {Outgoing[]} queue */
    const trim = (queue) => {
      /** @type {Outgoing[]} */
      const kept = [];
      for (const item of queue) {
        const t = withoutToolIds(item, ids);
        if (t === null) dropped.push(item);
        else kept.push(t);
      }
      return kept;
    };
    this.pending = trim(this.pending);
    this.unconfirmed = trim(this.unconfirmed);
    this.recount();
    return dropped;
  }

  /** Drop everything not yet sent (session closed). */
  clear() {
    const items = this.pending;
    this.pending = [];
    this.unconfirmed = [];
    this.unconfirmedAudio = 0;
    return items;
  }
}

/** Transcript bounds (Python: transcript.DEFAULT_MAX_TURNS / DEFAULT_MAX_BYTES). */
export const DEFAULT_MAX_TURNS = 200;
/** About 32k tokens of history: enough to re-seed a conversation, small to store. */
export const DEFAULT_MAX_BYTES = 128 * 1024;

const UTF8 = new TextEncoder();

/** UTF-8 bytes of `text`. @param {string} text */
function utf8Size(text) {
  return UTF8.encode(text).length;
}

/**
 * The end of `text` within `maxBytes` UTF-8 bytes (never a broken character).
 * @param {string} text @param {number} maxBytes
 */
function utf8Tail(text, maxBytes) {
  const data = UTF8.encode(text);
  if (data.length <= maxBytes) return text;
  let start = data.length - maxBytes;
  while (start < data.length && (data[start] & 0xc0) === 0x80) start += 1; // a continuation byte
  return new TextDecoder().decode(data.subarray(start));
}

/**
 * The client's own record of the conversation, to re-seed a fresh session. Bounded by turns
 * and by UTF-8 bytes (the newest are kept): it is saved with every handle (sessionStorage)
 * and sent whole as the re-seed, so a chatty model must not grow either without limit. A
 * single turn longer than the byte bound keeps its end. (Python: session/transcript.py.)
 */
export class Transcript {
  /** @param {number} [maxTurns] @param {number} [maxBytes] */
  constructor(maxTurns = DEFAULT_MAX_TURNS, maxBytes = DEFAULT_MAX_BYTES) {
    this.maxTurns = maxTurns;
    this.maxBytes = maxBytes;
    /** @type {Turn[]} */
    this.turns = [];
    /** @type {string[]} */
    this.modelParts = [];
    /** @type {string[]} */
    this.userParts = [];
    this.bytes = 0; // UTF-8 bytes of the committed turns
    this.modelBytes = 0; // ... of the model turn in progress
    this.userBytes = 0; // ... of the user's transcribed turn in progress
  }

  /** UTF-8 bytes of the committed turns' text. */
  get size() {
    return this.bytes;
  }

  /** @param {Turn[]} turns */
  load(turns) {
    this.turns = turns.map((t) => ({ role: t.role === "model" ? "model" : "user", text: String(t.text) }));
    this.bytes = this.turns.reduce((n, t) => n + utf8Size(t.text), 0);
    this.trim();
  }

  /** @param {"user"|"model"} role @param {string} text */
  add(role, text) {
    this.commitUser();
    if (role === "user") this.commitModel();
    if (text) this.append({ role, text });
  }

  /** @param {string} text */
  userTranscription(text) {
    this.userParts.push(text);
    this.userBytes += utf8Size(text);
    if (this.userBytes > this.maxBytes) {
      this.userParts = [utf8Tail(this.userParts.join(""), this.maxBytes)];
      this.userBytes = utf8Size(this.userParts[0]);
    }
  }

  /** @param {string} text */
  modelOutput(text) {
    this.commitUser();
    this.modelParts.push(text);
    this.modelBytes += utf8Size(text);
    if (this.modelBytes > this.maxBytes) {
      this.modelParts = [utf8Tail(this.modelParts.join(""), this.maxBytes)];
      this.modelBytes = utf8Size(this.modelParts[0]);
    }
  }

  get partialModelText() {
    return this.modelParts.join("");
  }

  commitUser() {
    const text = this.userParts.join("").trim();
    this.userParts = [];
    this.userBytes = 0;
    if (text) this.append({ role: "user", text });
  }

  commitModel() {
    const text = this.modelParts.join("").trim();
    this.modelParts = [];
    this.modelBytes = 0;
    if (text) this.append({ role: "model", text });
  }

  /** Remove the newest turn of `role` with exactly `text`. @param {"user"|"model"} role @param {string} text */
  forget(role, text) {
    for (let i = this.turns.length - 1; i >= 0; i--) {
      if (this.turns[i].role === role && this.turns[i].text === text) {
        this.turns.splice(i, 1);
        this.bytes -= utf8Size(text);
        return true;
      }
    }
    return false;
  }

  /** @returns {Turn[]} */
  snapshot() {
    return this.turns.map((t) => ({ ...t }));
  }

  /** History for a fresh session (`clientContent`, `turnComplete: false`), or null. @returns {Json|null} */
  seedMessage() {
    this.commitUser();
    this.commitModel();
    if (!this.turns.length) return null;
    return {
      clientContent: {
        turns: this.turns.map((t) => ({ role: t.role, parts: [{ text: t.text }] })),
        turnComplete: false,
      },
    };
  }

  /** @param {Turn} turn */
  append(turn) {
    if (utf8Size(turn.text) > this.maxBytes) turn = { role: turn.role, text: utf8Tail(turn.text, this.maxBytes) };
    this.turns.push(turn);
    this.bytes += utf8Size(turn.text);
    this.trim();
  }

  trim() {
    while (this.turns.length && (this.turns.length > this.maxTurns || this.bytes > this.maxBytes)) {
      const old = /** @type {Turn} */ (this.turns.shift());
      this.bytes -= utf8Size(old.text);
    }
  }
}
