// tunnelproof browser client: turns the app got complete that the handle does not hold yet.
//
// A port of tunnelproof/session/restore.py (same semantics; the contract scenarios run on
// both). Google sends the resumable handle that holds a turn some 20-70 ms after
// turnComplete; a link that drops inside that window resumes from the older handle, whose
// state lacks the finished turn. Replaying the sends that turn read would make the model
// answer them a second time. Instead the turn goes back as history: the user's side (text
// sent, or the input transcription of speech) and the model's answer (its text, or the
// output transcription of its audio) in one clientContent with turnComplete false, which
// the server appends without answering (the reference's own clientContent example carries
// a model turn so). The sends those turns read leave the replay record; one restore
// message takes their place, numbered with the newest of them, and covers the others:
// they end delivered with it, or sendDropped with it. What cannot be restored is said in
// `missing`; when nothing of the turns is known as text, they are replayed as before and
// the event says so (`reasked`).

import { getField } from "./protocol.js";
import { makeOutgoing } from "./outbox.js";

/** @typedef {import("./outbox.js").Outgoing} Outgoing */
/** @typedef {import("./outbox.js").Outbox} Outbox */
/** @typedef {import("./outbox.js").Turn} Turn */
/** @typedef {import("./turns.js").TurnTracker} TurnTracker */
/** @typedef {Extract<import("./protocol.js").ServerMessage, {kind: "serverContent"}>} ServerContent */
/** @typedef {{type: "turnsRestored", turns: number, seqs: number[], missing: string[], reasked: boolean}} TurnsRestored */
/** @typedef {{upto: number|null, heard: string, said: string, cut: boolean}} Completed */

/** Completed turns kept while no handle comes (Python: restore.MAX_TURNS). */
export const MAX_TURNS = 32;
/** Characters kept of one turn's user or model text (Python: restore.MAX_TEXT). */
export const MAX_TEXT = 64 * 1024;
/** Restore messages whose covered sends are remembered (Python: restore.MAX_COVERS). */
export const MAX_COVERS = 256;

/** Text of the turn in progress, bounded. */
class Said {
  constructor() {
    /** @type {string[]} */
    this.parts = [];
    this.size = 0;
  }

  /** @param {string} text */
  add(text) {
    if (this.size < MAX_TEXT) {
      this.parts.push(text);
      this.size += text.length;
    }
  }

  take() {
    const text = this.parts.join("").trim().slice(0, MAX_TEXT);
    this.parts = [];
    this.size = 0;
    return text;
  }
}

/** Completed turns since the newest resumable handle, and the restores made of them. */
export class TurnRestore {
  /**
   * @param {TurnTracker} turns
   * @param {{audio: boolean, enabled: boolean}} options audio: the output transcription is
   *   the model's words; enabled: session resumption is on (else a drop starts afresh)
   */
  constructor(turns, options) {
    this.turns = turns;
    this.audio = options.audio;
    this.enabled = options.enabled;
    /** @type {Completed[]} */
    this.done = [];
    this.heard = new Said();
    this.said = new Said();
    this.cut = false;
    /** @type {Map<number, number[]>} */
    this.covers = new Map();
  }

  /**
   * A serverContent was handled (after the turn tracker saw it).
   * @param {ServerContent} content @param {number|null} lastWritten
   */
  content(content, lastWritten) {
    if (!this.enabled) return;
    if (content.inputTranscription !== null) this.heard.add(content.inputTranscription.text);
    for (const part of content.parts) if (part.text !== null && !part.thought) this.said.add(part.text);
    if (this.audio && content.outputTranscription !== null) this.said.add(content.outputTranscription.text);
    this.cut = this.cut || content.interrupted;
    if (content.turnComplete) {
      // Everything before the oldest send no turn has read was read by this turn.
      const first = this.turns.unheldFrom;
      const upto = first !== null ? first - 1 : lastWritten;
      this.done.push({ upto, heard: this.heard.take(), said: this.said.take(), cut: this.cut });
      this.cut = false;
      if (this.done.length > MAX_TURNS) this.done.splice(0, this.done.length - MAX_TURNS);
    }
  }

  /** A resumable handle: it holds every turn completed before it. */
  handleIssued() {
    this.done = [];
  }

  /**
   * The sends covered by the restore messages among `seqs` (each told once).
   * @param {number[]} seqs @returns {number[]}
   */
  covered(seqs) {
    if (!this.covers.size) return [];
    /** @type {number[]} */
    const out = [];
    for (const seq of seqs) {
      const more = this.covers.get(seq);
      if (more !== undefined) {
        this.covers.delete(seq);
        out.push(...more);
      }
    }
    return out;
  }

  /**
   * The link dropped: restore the turns the newest handle lacks, in `outbox`. Returns the
   * event for the app (null when no completed turn is unheld) and the tool calls the
   * restored sends answer (settled: not to be cancelled; a call still open, or answered by
   * a send that is replayed, is cancelled as before). Must run before the
   * outbox's unconfirmed sends are put back for replay. Only when the next connection
   * resumes (`willResume`): a fresh session is re-seeded from the transcript instead.
   * @param {Outbox} outbox @param {number} now @param {boolean} willResume
   * @returns {[TurnsRestored|null, Set<string>]}
   */
  connectionLost(outbox, now, willResume) {
    const done = this.done;
    this.done = [];
    this.heard.take();
    this.said.take();
    this.cut = false;
    const uptos = done.map((t) => t.upto).filter((u) => u !== null);
    if (!uptos.length || !willResume) return [null, new Set()];
    const upto = Math.max(.../** @type {number[]} */ (uptos));
    const read = outbox.unconfirmed.filter((i) => i.seq <= upto).sort((a, b) => a.seq - b.seq);
    if (!read.length) return [null, new Set()]; // a handle holds what they read: nothing is replayed
    const [turns, missing] = history(done, read);
    if (!turns.length) {
      // Nothing known as text: replayed (answered again, if it was: said so).
      const told = done.some((t) => t.said || !t.cut);
      const event = told ? { type: /** @type {const} */ ("turnsRestored"), turns: done.length, seqs: [], missing, reasked: true } : null;
      return [event, new Set()];
    }
    outbox.removeWhere((i) => read.includes(i));
    const earlier = outbox.takeUnverified(upto + 1); // audio beyond the replay window
    const seqs = [...new Set([...read.map((i) => i.seq), ...earlier.map((a) => a.seq)])].sort((a, b) => a - b);
    const message = {
      clientContent: { turns: turns.map((t) => ({ role: t.role, parts: [{ text: t.text }] })), turnComplete: false },
    };
    const restore = { ...makeOutgoing(read[read.length - 1].seq, message, now), wasSent: true }; // a replay
    outbox.unconfirmed.unshift(restore); // in front: older than anything left
    this.covers.set(
      restore.seq,
      seqs.filter((s) => s !== restore.seq),
    );
    if (this.covers.size > MAX_COVERS) this.covers.delete(Math.min(...this.covers.keys()));
    const calls = new Set(read.flatMap((i) => i.toolIds));
    return [{ type: "turnsRestored", turns: done.length, seqs, missing, reasked: false }, calls];
  }
}

/**
 * The restore's turns, in the order they were said, and what is missing.
 * @param {Completed[]} done @param {Outgoing[]} read @returns {[Turn[], string[]]}
 */
function history(done, read) {
  /** @type {Turn[]} */
  const turns = [];
  /** @type {string[]} */
  const missing = [];
  /** @param {"user"|"model"} role @param {string} text */
  const say = (role, text) => {
    if (text) turns.push({ role, text });
  };
  let low = -1;
  for (const turn of done) {
    const high = turn.upto !== null ? turn.upto : low;
    const mine = read.filter((i) => low < i.seq && i.seq <= high);
    low = Math.max(low, high);
    for (const item of mine) for (const t of item.turns) say(t.role, t.text); // text sent, or an earlier restore
    const spoke = mine.some((i) => i.kind === "audio");
    if (turn.heard) say("user", turn.heard);
    else if (spoke) missing.push("what the user said (speech without input transcription)");
    if (mine.some((i) => i.kind === "realtime" && isVideo(i))) missing.push("video (only text is restored)");
    if (turn.said) say("model", turn.said);
    else if (!turn.cut) missing.push("the model's answer (no text: turn on output transcription)"); // a turn cut before any word said nothing
    const calls = mine.flatMap((i) => i.toolIds);
    if (calls.length) missing.push(`tool calls ${calls.join(", ")} (only the answer's text is restored)`);
  }
  return [turns, [...new Set(missing)]];
}

/** @param {Outgoing} item */
function isVideo(item) {
  const body = Object.values(item.message)[0];
  return typeof body === "object" && body !== null && getField(body, "video") != null;
}
