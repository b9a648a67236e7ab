// Browser-only inputs of the machine (online/offline, a tab shown again) and the parser's
// handling of binary frames. The shared contract is in contract.test.js.

import { test } from "node:test";
import assert from "node:assert/strict";
import { SessionMachine } from "../../src/tunnelproof/browser/machine.js";
import { parseServerFrame, ProtocolError, classifyClose } from "../../src/tunnelproof/browser/protocol.js";
import { toCredential } from "../../src/tunnelproof/browser/client.js";

const WALL0 = 1_800_000_000;

function harness() {
  const m = new SessionMachine({ model: "gemini-3.8-live" }, { random: () => 0.5 });
  const h = { m, now: 0, request: 0, attempt: 0, timers: new Map(), last: [] };
  h.feed = (event) => {
    h.last = m.handle(event, { now: h.now, wall: WALL0 + h.now });
    for (const a of h.last) {
      if (a.type === "fetchToken") h.request = a.request;
      if (a.type === "openSocket") h.attempt = a.attempt;
      if (a.type === "setTimer") h.timers.set(a.name, a);
      if (a.type === "cancelTimer") h.timers.delete(a.name);
    }
    return h.last;
  };
  h.fire = (name) => {
    const t = h.timers.get(name);
    h.timers.delete(name);
    h.now = Math.max(h.now, t.at);
    return h.feed({ type: "timerFired", name, serial: t.serial });
  };
  h.connect = () => {
    h.feed({ type: "started" });
    h.feed({ type: "tokenFetched", request: h.request, credential: { token: "auth_tokens/a", wsUrl: "ws://x/ws", expiresAt: WALL0 + 1800, newSessionExpiresAt: WALL0 + 60 } });
    h.feed({ type: "socketOpened", attempt: h.attempt });
    h.feed({ type: "frameReceived", attempt: h.attempt, data: '{"setupComplete":{}}' });
    h.feed({ type: "frameReceived", attempt: h.attempt, data: '{"sessionResumptionUpdate":{"newHandle":"h1","resumable":true}}' });
  };
  return h;
}

const types = (actions) => actions.map((a) => (a.type === "emit" ? `emit:${a.event.type}` : a.type));

test("offline never closes a live socket (Chromium keeps it working)", () => {
  const h = harness();
  h.connect();
  const out = h.feed({ type: "networkOffline" });
  assert.deepEqual(out, []);
  assert.equal(h.m.state, "connected");
});

test("while the browser is offline, probes slow down instead of burning attempts", () => {
  const h = harness();
  h.connect();
  h.feed({ type: "networkOffline" });
  h.feed({ type: "socketClosed", attempt: h.attempt, code: 1006, reason: "" }); // at once: no retry timer
  const out = h.feed({ type: "tokenFailed", request: h.request, kind: "offline", message: "Failed to fetch" });
  const rec = out.find((a) => a.type === "emit" && a.event.type === "reconnecting");
  assert.equal(rec.event.kind, "offline");
  assert.equal(rec.event.delay, 5);
});

test("online redials at once instead of waiting out the timer", () => {
  const h = harness();
  h.connect();
  h.feed({ type: "networkOffline" });
  h.feed({ type: "socketClosed", attempt: h.attempt, code: 1006, reason: "" }); // at once: no retry timer
  h.feed({ type: "tokenFailed", request: h.request, kind: "offline" });
  assert.ok(h.timers.has("retry"));
  h.now += 0.2;
  const out = h.feed({ type: "networkOnline" });
  assert.deepEqual(types(out).slice(0, 2), ["cancelTimer", "fetchToken"]);
  assert.equal(h.timers.has("retry"), false);
});

test("online abandons an attempt that was started inside the outage", () => {
  const h = harness();
  h.connect();
  h.feed({ type: "socketClosed", attempt: h.attempt, code: 1006, reason: "" }); // at once: no retry timer
  h.feed({ type: "tokenFailed", request: h.request, kind: "offline" });
  h.fire("retry");
  h.feed({ type: "tokenFetched", request: h.request, credential: { token: "auth_tokens/b", wsUrl: "ws://x/ws", expiresAt: WALL0 + 1800 } });
  const before = h.attempt;
  const out = h.feed({ type: "networkOnline" });
  assert.ok(types(out).includes("abortSocket"));
  assert.ok(types(out).includes("openSocket"));
  assert.equal(h.attempt, before + 1);
});

test("a tab shown after a long hide with a quiet link checks it by resuming at a turn boundary", () => {
  const h = harness();
  h.connect();
  h.now += 45;
  const out = h.feed({ type: "pageShown", hiddenFor: 45 });
  const close = out.find((a) => a.type === "closeSocket");
  assert.ok(close, `no check: ${types(out)}`);
  assert.equal(close.code, 1000);
  const after = h.feed({ type: "socketClosed", attempt: h.attempt, code: 1000, reason: "" });
  assert.ok(types(after).includes("emit:reconnecting"));
  assert.ok(after.some((a) => a.type === "fetchToken"));
});

test("lastTurnHeld: false from turnComplete until the next resumable handle (it comes ~40 ms later)", () => {
  const h = harness();
  h.connect();
  assert.equal(h.m.lastTurnHeld, true); // h1 came after the (no) last turn
  h.m.send({ realtimeInput: { text: "my name is Ada" } }, { now: h.now, wall: WALL0 + h.now });
  h.feed({ type: "frameReceived", attempt: h.attempt, data: '{"serverContent":{"outputTranscription":{"text":"Hi Ada"}}}' });
  h.feed({ type: "frameReceived", attempt: h.attempt, data: '{"serverContent":{"turnComplete":true}}' });
  assert.equal(h.m.lastTurnHeld, false);
  h.feed({ type: "frameReceived", attempt: h.attempt, data: '{"sessionResumptionUpdate":{"newHandle":"h2","resumable":true}}' });
  assert.equal(h.m.lastTurnHeld, true);
});

test("a tab shown after a long hide checks the link even when the turn's handle never came", () => {
  // The link went silent between turnComplete and the handle that holds the turn: the
  // handle is long overdue, so the quiet is the link's fault; check it (resume) anyway.
  const h = harness();
  h.connect();
  h.m.send({ realtimeInput: { text: "my name is Ada" } }, { now: h.now, wall: WALL0 + h.now });
  h.feed({ type: "frameReceived", attempt: h.attempt, data: '{"serverContent":{"outputTranscription":{"text":"Hi Ada"}}}' });
  h.feed({ type: "frameReceived", attempt: h.attempt, data: '{"serverContent":{"turnComplete":true}}' });
  h.now += 45;
  const out = h.feed({ type: "pageShown", hiddenFor: 45 });
  assert.ok(out.some((a) => a.type === "closeSocket"), `no check: ${types(out)}`);
});

test("a short hide, or frames that kept coming while hidden, do not touch the link", () => {
  const h = harness();
  h.connect();
  h.now += 10;
  assert.deepEqual(h.feed({ type: "pageShown", hiddenFor: 10 }), []);
  h.now += 40;
  h.feed({ type: "frameReceived", attempt: h.attempt, data: '{"usageMetadata":{"totalTokenCount":3}}' });
  h.now += 1;
  assert.deepEqual(types(h.feed({ type: "pageShown", hiddenFor: 41 })), []);
});

test("a tab shown while waiting redials at once (its backoff timer was frozen)", () => {
  const h = harness();
  h.connect();
  h.feed({ type: "socketClosed", attempt: h.attempt, code: 1011, reason: "" });
  const out = h.feed({ type: "pageShown", hiddenFor: 120 });
  assert.ok(out.some((a) => a.type === "fetchToken"));
});

test("a model thinking for a long time is not a dead link once output flows", () => {
  const h = harness();
  h.connect();
  h.feed({ type: "frameReceived", attempt: h.attempt, data: '{"serverContent":{"generationComplete":true}}' });
  // Nothing owed after generationComplete: no reply watchdog, however long it is quiet.
  assert.equal(h.timers.has("reply"), false);
});

test("binary frames: ArrayBuffer and typed arrays parse; bad UTF-8 and JSON are clear errors", () => {
  const bytes = new TextEncoder().encode('{"setupComplete":{},"usageMetadata":{"totalTokenCount":"7"}}');
  const a = parseServerFrame(bytes.buffer);
  assert.deepEqual(a.messages.map((m) => m.kind), ["setupComplete", "usageMetadata"]);
  assert.equal(parseServerFrame(bytes).messages.length, 2);
  assert.throws(() => parseServerFrame(new Uint8Array([0xff, 0xfe])), ProtocolError);
  assert.throws(() => parseServerFrame("[object Blob]"), ProtocolError);
  const h = harness();
  h.connect();
  const out = h.feed({ type: "frameReceived", attempt: h.attempt, data: "[object Blob]" });
  assert.deepEqual(types(out), ["emit:protocolViolation"]);
});

test("close codes: browsers' 1005/1006 retry, 1000 after goAway is expected", () => {
  assert.equal(classifyClose(1006).kind, "retry");
  assert.equal(classifyClose(1005).kind, "retry");
  assert.equal(classifyClose(1000, "", { afterGoAway: true }).kind, "expected");
  assert.equal(classifyClose(1007, "", { resuming: true }).kind, "bad_resume");
  assert.equal(classifyClose(1011, "API key not valid. Please pass a valid API key.").kind, "fatal_auth");
});

test("a token that failed to open twice is dropped (a browser cannot tell a refusal from a drop)", () => {
  const h = harness();
  h.feed({ type: "started" });
  h.feed({ type: "tokenFetched", request: h.request, credential: { token: "auth_tokens/a", wsUrl: "ws://x/ws", expiresAt: WALL0 + 1800 } });
  h.feed({ type: "socketOpenFailed", attempt: h.attempt, kind: "offline" });
  assert.ok(types(h.fire("retry")).includes("openSocket"), "first failure: the token is reused");
  h.feed({ type: "socketOpenFailed", attempt: h.attempt, kind: "offline" });
  assert.ok(types(h.fire("retry")).includes("fetchToken"), "second failure: a fresh token");
});

test("the token route's answer becomes a credential with UNIX-second expiries", () => {
  const c = toCredential({ token: "auth_tokens/x", wsUrl: "ws://h/ws", expiresAt: "2027-01-01T00:00:00Z", newSessionExpiresAt: "2027-01-01T00:01:00Z", model: "m" });
  assert.equal(c.expiresAt, Date.parse("2027-01-01T00:00:00Z") / 1000);
  assert.equal(c.newSessionExpiresAt - c.expiresAt, 60);
  assert.throws(() => toCredential(/** @type {any} */ ({ token: "x" })));
});

test("a resume refused with 1011 (old socket still open) keeps the handle and retries until staleSocketWait", () => {
  const h = harness();
  h.connect();
  h.feed({ type: "socketClosed", attempt: h.attempt, code: 1006, reason: "" });
  const refuse = () => {
    if (h.timers.has("retry")) h.fire("retry");
    h.feed({ type: "tokenFetched", request: h.request, credential: { token: "auth_tokens/b", wsUrl: "ws://x/ws", expiresAt: WALL0 + h.now + 1800, newSessionExpiresAt: WALL0 + h.now + 60 } });
    const open = h.feed({ type: "socketOpened", attempt: h.attempt });
    const setup = open.find((a) => a.type === "sendFrame");
    assert.equal(JSON.parse(setup.text).setup.sessionResumption.handle, "h1", "resumes with its handle");
    h.now += 0.1;
    return h.feed({ type: "socketClosed", attempt: h.attempt, code: 1011, reason: "Internal error occurred." });
  };
  // Google refuses for as long as it holds the old half-open socket (10 s idle + 1 s probe
  // in the emulator): three or more refusals, each retried with the handle, within 2 s.
  for (let i = 0; i < 5; i++) {
    const out = refuse();
    assert.ok(!types(out).includes("deleteHandle"), `handle dropped after ${i + 1} refusal(s)`);
    const rec = out.find((a) => a.type === "emit" && a.event.type === "reconnecting");
    assert.ok(rec && rec.event.delay <= 2, `retry within 2 s: ${JSON.stringify(rec)}`);
    assert.equal(h.m.resumptionHandle, "h1");
    h.now += 2;
  }
  // Past staleSocketWait (30 s) of refusals: the handle is given up for a fresh session.
  h.now += 30;
  const out = refuse();
  assert.ok(types(out).includes("deleteHandle"), types(out).join(","));
  assert.equal(h.m.resumptionHandle, null);
});
