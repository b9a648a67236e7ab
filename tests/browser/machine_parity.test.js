// The issue-13 rules in the browser machine, beyond the shared contract table: the same
// checks as the Python tests of those rules (tests/session/test_turns.py,
// test_session_machine_promise.py, test_session_policy.py), so the two ports cannot
// drift on the properties a table of single steps does not state (every send ends
// delivered, replayed or reported; one audio report per outage; bounded goAway loops).

import { test } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_WATCHDOGS, SessionMachine, offlineTokenTimeout } from "../../src/tunnelproof/browser/machine.js";
import { TurnTracker } from "../../src/tunnelproof/browser/turns.js";
import { AudioDropLedger, Transcript } from "../../src/tunnelproof/browser/outbox.js";

const WALL0 = 1_800_000_000;
const CHUNK_20MS = Buffer.alloc(640).toString("base64"); // 20 ms of 16 kHz s16le silence

function harness(options = {}) {
  const m = new SessionMachine({ model: "gemini-3.8-live" }, { random: () => 0.5, ...options });
  const h = { m, now: 0, request: 0, attempt: 0, timers: new Map(), log: [], tokens: 0 };
  h.track = (actions) => {
    for (const a of actions) {
      h.log.push(a);
      if (a.type === "fetchToken") h.request = a.request;
      if (a.type === "openSocket") h.attempt = a.attempt;
      if (a.type === "setTimer") h.timers.set(a.name, a);
      if (a.type === "cancelTimer") h.timers.delete(a.name);
    }
    return actions;
  };
  h.feed = (event) => h.track(m.handle(event, { now: h.now, wall: WALL0 + h.now }));
  h.send = (message) => {
    const [result, actions] = m.send(message, { now: h.now, wall: WALL0 + h.now });
    h.track(actions);
    return result;
  };
  h.fire = (name) => {
    const t = h.timers.get(name);
    h.timers.delete(name);
    h.now = Math.max(h.now, t.at);
    return h.feed({ type: "timerFired", name, serial: t.serial });
  };
  h.frame = (obj) => h.feed({ type: "frameReceived", attempt: h.attempt, data: JSON.stringify(obj) });
  h.token = () => {
    h.tokens += 1;
    const wall = WALL0 + h.now;
    return h.feed({
      type: "tokenFetched",
      request: h.request,
      credential: { token: `auth_tokens/t${h.tokens}`, wsUrl: "ws://x/ws", expiresAt: wall + 1800, newSessionExpiresAt: wall + 60 },
    });
  };
  h.tokenFail = (kind) => h.feed({ type: "tokenFailed", request: h.request, kind, message: kind });
  h.handleUpdate = (handle) => h.frame({ sessionResumptionUpdate: { newHandle: handle, resumable: true } });
  h.closed = (code) => h.feed({ type: "socketClosed", attempt: h.attempt, code, reason: "" });
  /** From fetching or opening, through setupComplete. */
  h.connect = () => {
    if (h.m.phase === "fetching") h.token();
    h.feed({ type: "socketOpened", attempt: h.attempt });
    h.frame({ setupComplete: {} });
  };
  h.said = (text, extra = {}) => h.frame({ serverContent: { outputTranscription: { text }, ...extra } });
  h.events = (type) => h.log.filter((a) => a.type === "emit" && a.event.type === type).map((a) => a.event);
  h.textsSentSince = (index) =>
    h.log
      .slice(index)
      .filter((a) => a.type === "sendFrame")
      .map((a) => JSON.parse(a.text))
      .filter((f) => f.realtimeInput && typeof f.realtimeInput.text === "string")
      .map((f) => f.realtimeInput.text);
  return h;
}

// -- the turn tracker (tests/session/test_turns.py) ------------------------------------------

test("turns: a send that asks for an answer makes a reply due; awaiting starts at the oldest question", () => {
  const t = new TurnTracker();
  t.sent(1, false);
  assert.equal(t.replyDue, false);
  assert.deepEqual(t.awaitingAnswer, []);
  t.sent(2, true);
  t.sent(3, false);
  t.sent(4, true);
  assert.ok(t.replyDue && t.owed && t.busy);
  assert.deepEqual(t.awaitingAnswer, [2, 3, 4]);
});

test("turns: a follow-up during the answer is answered by the next turn (FIFO)", () => {
  const t = new TurnTracker();
  t.sent(1, true);
  t.outputArrived();
  assert.equal(t.answering, 1);
  t.sent(2, true);
  t.outputArrived(); // more of answer 1
  assert.deepEqual(t.awaitingAnswer, [2]);
  t.turnCompleted();
  assert.deepEqual(t.awaitingAnswer, [2]);
  t.outputArrived();
  assert.equal(t.answering, 2);
  assert.deepEqual(t.awaitingAnswer, []);
});

test("turns: generationComplete ends the debt, not the turn; a tool call answers", () => {
  const t = new TurnTracker();
  t.sent(1, true);
  t.outputArrived();
  t.generationCompleted();
  assert.equal(t.owed, false);
  assert.equal(t.busy, true);
  t.turnCompleted();
  assert.equal(t.busy, false);
  t.sent(2, true);
  t.toolCallArrived();
  assert.equal(t.replyDue, false);
  t.sent(3, true); // the tool response
  assert.deepEqual(t.awaitingAnswer, [3]);
});

test("turns: an interrupted turn without output still consumed its question; a lost connection says what was cut", () => {
  const t = new TurnTracker();
  t.sent(1, true);
  t.sent(2, true);
  t.interrupted();
  t.turnCompleted();
  assert.deepEqual(t.awaitingAnswer, [2]);
  t.outputArrived();
  t.sent(3, true);
  assert.deepEqual(t.connectionLost(), { cut: 2, waiting: [3], owed: true });
  assert.equal(t.busy, false);
  assert.deepEqual(t.awaitingAnswer, []);
});

// -- the offline token allowance (tests/session/test_session_policy.py) ----------------------

test("offline token allowance follows the backend and grows after timeouts", () => {
  const w = { ...DEFAULT_WATCHDOGS, tokenTimeout: 10, probeConnectTimeout: 3 };
  assert.equal(offlineTokenTimeout(w, null, 0), 3);
  assert.equal(offlineTokenTimeout(w, 0.05, 0), 3);
  assert.equal(offlineTokenTimeout(w, 3.5, 0), 7.5);
  assert.equal(offlineTokenTimeout(w, null, 1), 6);
  assert.equal(offlineTokenTimeout(w, null, 5), 10);
});

// -- accounting (tests/session/test_session_machine_promise.py) ------------------------------

test("ten questions through drops: each ends delivered or reported, none both", () => {
  const h = harness();
  h.feed({ type: "started" });
  h.connect();
  h.handleUpdate("h0");
  const seqs = [];
  for (let n = 0; n < 10; n++) {
    seqs.push(h.send({ realtimeInput: { text: `q${n}` } }).seq);
    h.said(`a${n - 1}`, { turnComplete: true }); // answers lag one question behind
    h.handleUpdate(`h${n + 1}`);
    if (n % 3 === 2) {
      h.closed(1006);
      h.now += 1;
      h.connect();
    }
  }
  h.said("a9", { turnComplete: true });
  h.handleUpdate("last");
  h.said("a10", { turnComplete: true });
  h.handleUpdate("final");
  const delivered = h.events("delivered").flatMap((e) => e.seqs);
  const dropped = h.events("sendDropped").flatMap((e) => e.seqs);
  for (const seq of seqs) assert.ok(delivered.includes(seq) || dropped.includes(seq), `seq ${seq} has no verdict`);
  assert.equal(new Set(delivered).size, delivered.length, "each confirmed at most once");
  assert.ok(!delivered.some((s) => dropped.includes(s)), "never both delivered and dropped");
});

test("10 s of speech into a 10 s outage: one audio report, with its duration", () => {
  const h = harness();
  h.feed({ type: "started" });
  h.connect();
  h.handleUpdate("h1");
  h.now += 1;
  h.closed(1006);
  h.tokenFail("offline");
  const seqs = [];
  for (let i = 0; i < 500; i++) {
    seqs.push(h.send({ realtimeInput: { audio: { mimeType: "audio/pcm;rate=16000", data: CHUNK_20MS } } }).seq);
    h.now += 0.02;
    if (h.timers.has("retry") && h.timers.get("retry").at <= h.now) {
      h.fire("retry");
      if (h.m.phase === "fetching") h.tokenFail("offline");
    }
  }
  assert.equal(h.events("sendDropped").length, 0, "nothing reported during the outage");
  if (h.m.phase === "waiting") h.fire("retry");
  h.connect();
  const drops = h.events("sendDropped").filter((e) => e.kind === "audio");
  assert.equal(drops.length, 1, `${drops.length} events for one outage`);
  assert.ok(Math.abs(drops[0].audioMs - 20 * drops[0].seqs.length) < 1e-6);
  const replayedChunks = h.log.filter((a) => a.type === "sendFrame" && a.text.includes('"audio"')).length;
  assert.equal(drops[0].seqs.length + replayedChunks, seqs.length, "every chunk sent or reported");
});

test("audio evicted from the replay window of a dead link is reported, not forgotten", () => {
  const h = harness();
  h.feed({ type: "started" });
  h.connect();
  h.handleUpdate("h1");
  const before = h.log.length;
  const seqs = [];
  for (let i = 0; i < 400; i++) seqs.push(h.send({ realtimeInput: { audio: { mimeType: "audio/pcm;rate=16000", data: CHUNK_20MS } } }).seq);
  h.closed(1006); // 8 s sent into a dead link; the replay window keeps 5 s
  h.now += 0.5;
  const reconnectAt = h.log.length;
  h.connect();
  const reported = new Set(h.events("sendDropped").flatMap((e) => e.seqs));
  const replayed = h.log.slice(reconnectAt).filter((a) => a.type === "sendFrame" && a.text.includes('"audio"')).length;
  assert.ok(h.log.length > before);
  assert.equal(reported.size, 150, "3 s beyond the 5 s window");
  assert.equal(reported.size + replayed, seqs.length, "every chunk replayed or reported");
  assert.equal(h.events("sendDropped").length, 1, "one report");
});

test("audio that left the replay window is delivered by the next handle", () => {
  const h = harness();
  h.feed({ type: "started" });
  h.connect();
  h.handleUpdate("h1");
  for (let i = 0; i < 300; i++) h.send({ realtimeInput: { audio: { mimeType: "audio/pcm;rate=16000", data: CHUNK_20MS } } });
  h.handleUpdate("h2");
  const delivered = h.events("delivered").flatMap((e) => e.seqs);
  assert.equal(delivered.length, 300, "the 50 evicted chunks and the 250 kept");
  assert.deepEqual(delivered, [...delivered].sort((a, b) => a - b));
});

test("the ledger gathers drops and reasons once", () => {
  const ledger = new AudioDropLedger();
  assert.equal(ledger.take(), null);
  ledger.add([1, 2], 40, "too old");
  ledger.add([], 0, "ignored");
  ledger.add([3], 20, "too old");
  ledger.add([4], 20, "bound");
  assert.deepEqual(ledger.take(), [[1, 2, 3, 4], 80, "too old; bound"]);
  assert.equal(ledger.take(), null);
});

test("a question replayed after the resume is the one whose answer never started", () => {
  const h = harness();
  h.feed({ type: "started" });
  h.connect();
  h.handleUpdate("h0");
  h.send({ realtimeInput: { text: "count to 3" } });
  h.said("1, 2");
  h.send({ realtimeInput: { text: "tell me a story" } });
  h.said(", 3.", { turnComplete: true });
  h.handleUpdate("h1");
  h.closed(1006);
  h.now += 1;
  const mark = h.log.length;
  h.connect();
  assert.deepEqual(h.textsSentSince(mark), ["tell me a story"]);
});

// -- the transcript's byte bound (tests/session: transcript) ---------------------------------

test("the transcript keeps the newest turns within its UTF-8 byte bound, never a broken character", () => {
  const t = new Transcript(200, 5);
  t.add("model", "🚂🚂🚂"); // 12 bytes: the end is kept, on a character boundary
  assert.deepEqual(t.snapshot(), [{ role: "model", text: "🚂" }]);
  assert.equal(t.size, 4);
  const u = new Transcript(200, 10);
  u.add("user", "12345");
  u.add("model", "abcde");
  u.add("user", "xyz");
  assert.deepEqual(
    u.snapshot().map((x) => x.text),
    ["abcde", "xyz"],
  );
  assert.equal(u.size, 8);
  assert.ok(u.forget("user", "xyz"));
  assert.equal(u.size, 5);
  for (let i = 0; i < 100; i++) u.modelOutput("0123456789");
  u.commitModel();
  assert.deepEqual(u.snapshot(), [{ role: "model", text: "0123456789" }], "a streaming answer stays bounded");
});

// -- goAway loops (symptoms 6 and 9) ----------------------------------------------------------

test("goAway on every connection: a minute of it is no hot loop", () => {
  const h = harness({ policy: { handoverBudget: 3 } });
  h.feed({ type: "started" });
  h.connect();
  h.handleUpdate("h1");
  const start = h.now;
  for (let i = 0; i < 2000 && h.now - start < 60; i++) {
    if (h.m.phase === "connected") {
      if (!h.timers.has("goaway")) h.frame({ goAway: { timeLeft: "6s" } });
      if (h.request !== null && h.m.request !== null) h.token();
    }
    if (h.m.phase === "closing") h.closed(1000);
    if (h.m.phase === "fetching") h.token();
    if (h.m.phase === "opening") {
      h.connect();
      h.handleUpdate("h1");
      continue;
    }
    // Otherwise let the next timer (goAway deadline, retry) come due.
    const next = [...h.timers.values()].filter((t) => t.name !== "stable" && t.name !== "close").sort((a, b) => a.at - b.at)[0];
    if (next) h.fire(next.name);
    else h.now += 0.05;
  }
  const connections = h.m.metrics.connections;
  console.log(`goAway loop: ${connections} connections in ${(h.now - start).toFixed(1)} s`);
  assert.ok(connections <= 40, `${connections} connections in a minute`);
  assert.ok(connections >= 5, `${connections}: the session still hands over`);
  assert.notEqual(h.m.state, "failed");
  const planned = h.events("reconnecting").filter((e) => e.planned);
  assert.deepEqual(planned.slice(0, 3).map((e) => e.delay), [0, 0, 0], "the budget goes at once");
  assert.ok(planned.slice(3).every((e) => e.delay > 0), "beyond it, backed off");
});

test("a server that closes at once after every goAway is no hot loop: its close counts against the budget", () => {
  // Python: test_a_server_that_closes_at_once_after_every_go_away_is_no_hot_loop. The
  // server's close after goAway used not to count, so every reconnect went at once.
  const h = harness({ policy: { handoverBudget: 3 } });
  h.feed({ type: "started" });
  h.connect();
  h.handleUpdate("h1");
  const start = h.now;
  for (let i = 0; i < 400 && h.now - start < 60; i++) {
    if (h.m.phase === "connected") {
      h.frame({ goAway: { timeLeft: "0s" } });
      h.closed(1011);
    }
    if (h.m.phase === "fetching") h.token();
    if (h.m.phase === "opening") {
      h.connect();
      h.handleUpdate("h1");
      continue;
    }
    if (h.m.phase === "waiting" && h.timers.has("retry")) h.fire("retry");
    else h.now += 0.01;
  }
  const connections = h.m.metrics.connections;
  assert.notEqual(h.m.state, "failed");
  assert.ok(connections <= 40, `${connections} connections in ${(h.now - start).toFixed(1)} s`);
  assert.ok(h.now - start > 30, "the loop ran out of steps: connections came too fast");
});
