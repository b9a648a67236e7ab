// Random walks through the browser machine (the Python side has a Hypothesis state-machine
// test; this is its small JS sibling): any order of events, late events of old sockets,
// garbage frames and browser signals must never throw, never leave two sockets live, never
// loop without a timer, and keep the outbox inside its bounds.

import { test } from "node:test";
import assert from "node:assert/strict";
import { SessionMachine } from "../../src/tunnelproof/browser/machine.js";

function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FRAMES = [
  '{"setupComplete":{}}',
  '{"sessionResumptionUpdate":{"newHandle":"h","resumable":true}}',
  '{"sessionResumptionUpdate":{"resumable":false}}',
  '{"serverContent":{"outputTranscription":{"text":"hi"}}}',
  '{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm;rate=24000","data":"AAAA"}}]}}}',
  '{"serverContent":{"turnComplete":true}}',
  '{"serverContent":{"interrupted":true}}',
  '{"serverContent":{"generationComplete":true}}',
  '{"toolCall":{"functionCalls":[{"id":"c1","name":"f","args":{}}]}}',
  '{"toolCallCancellation":{"ids":["c1"]}}',
  '{"goAway":{"timeLeft":"3s"}}',
  '{"goAway":{"timeLeft":"soon"}}',
  "not json",
  "[1,2]",
  '{"somethingNew":{"x":1}}',
];
const SENDS = [
  { realtimeInput: { text: "hello" } },
  { realtimeInput: { audio: { mimeType: "audio/pcm;rate=16000", data: "A".repeat(4000) } } },
  { toolResponse: { functionResponses: [{ id: "c1", name: "f", response: {} }] } },
  { clientContent: { turns: [{ role: "user", parts: [{ text: "x" }] }], turnComplete: true } },
];

const reached = { connections: 0, reconnects: 0, resumes: 0, handovers: 0, failed: 0, restores: 0 };

for (let seed = 1; seed <= 40; seed++) {
  test(`random walk ${seed}`, () => {
    const r = rng(seed);
    const pick = (xs) => xs[Math.floor(r() * xs.length)];
    const m = new SessionMachine({ model: "gemini-3.8-live" }, { random: r, limits: { maxMessages: 8, maxAudioMs: 600 } });
    let now = 0;
    const wall = () => 1_800_000_000 + now;
    const timers = new Map();
    const live = new Set();
    let request = 0;
    const attempts = [];
    const apply = (actions) => {
      for (const a of actions) {
        if (a.type === "setTimer") {
          assert.ok(a.at >= now - 1e-9, "a timer in the past");
          timers.set(a.name, a);
        } else if (a.type === "cancelTimer") timers.delete(a.name);
        else if (a.type === "fetchToken") request = a.request;
        else if (a.type === "openSocket") {
          live.add(a.attempt);
          attempts.push(a.attempt);
        } else if (a.type === "abortSocket") live.delete(a.attempt);
        else if (a.type === "emit" && a.event.type === "turnsRestored") reached.restores += 1;
      }
      assert.ok(live.size <= 1, `two sockets live: ${[...live]}`);
    };
    apply(m.handle({ type: "started" }, { now, wall: wall() }));
    for (let step = 0; step < 300; step++) {
      const attempt = r() < 0.9 ? attempts.at(-1) ?? 0 : pick(attempts.length ? attempts : [0]);
      const choice = r();
      let event = null;
      const credential = { token: "auth_tokens/x", wsUrl: "ws://h/ws", expiresAt: wall() + 1800, newSessionExpiresAt: wall() + 60 };
      const progress = {
        fetching: { type: "tokenFetched", request, credential },
        opening: { type: "socketOpened", attempt },
        setup: { type: "frameReceived", attempt, data: FRAMES[0] },
        failed: { type: "resumeRequested" },
      }[m.phase];
      if (progress && r() < 0.6) event = progress;
      else if (m.phase === "waiting" && r() < 0.6 && timers.has("retry")) {
        const t = timers.get("retry");
        timers.delete("retry");
        now = Math.max(now, t.at);
        event = { type: "timerFired", name: t.name, serial: t.serial };
      } else if (choice < 0.08) event = { type: "tokenFetched", request, credential: { token: "auth_tokens/x", wsUrl: "ws://h/ws", expiresAt: wall() + 1800, newSessionExpiresAt: wall() + 60 } };
      else if (choice < 0.11) event = { type: "tokenFailed", request, kind: pick(["offline", "unavailable", "rate_limited"]), retryAfter: pick([null, 2]) };
      else if (choice < 0.2) event = { type: "socketOpened", attempt };
      else if (choice < 0.23) event = { type: "socketOpenFailed", attempt, kind: pick(["offline", "error"]) };
      else if (choice < 0.5) event = { type: "frameReceived", attempt, data: pick(FRAMES) };
      else if (choice < 0.58) {
        event = { type: "socketClosed", attempt, code: pick([null, 1000, 1006, 1007, 1011, 1008]), reason: "" };
      } else if (choice < 0.75 && timers.size) {
        const t = pick([...timers.values()]);
        timers.delete(t.name);
        now = Math.max(now, t.at);
        event = { type: "timerFired", name: t.name, serial: t.serial };
      } else if (choice < 0.8) event = { type: pick(["networkOffline", "networkOnline"]) };
      else if (choice < 0.82) event = { type: "pageShown", hiddenFor: pick([1, 60]) };
      else if (choice < 0.84) event = { type: "resumeRequested" };
      else if (choice < 0.845) event = { type: "closeRequested" };
      else {
        now += r() * 0.5;
        const [result, actions] = m.send(pick(SENDS), { now, wall: wall() });
        assert.ok(["sent", "queued", "dropped"].includes(result.status));
        apply(actions);
        continue;
      }
      if (event.type === "socketClosed") live.delete(event.attempt);
      if (event.type === "socketOpenFailed") live.delete(event.attempt);
      apply(m.handle(event, { now, wall: wall() }));
      const [count, bytes] = m.outbox.pendingOther();
      assert.ok(count <= 8 && bytes <= m.outbox.limits.maxBytes, "outbox over its bounds");
      assert.ok(m.outbox.pendingAudioMs() <= 600 + 1e-6, "audio over its bound");
      // Never stuck: while reconnecting, something is always in flight or scheduled.
      if (m.phase === "waiting") assert.ok(timers.has("retry"), "waiting without a retry timer");
      if (m.phase === "fetching") assert.ok(timers.has("token"), "fetching without a timeout");
      if (m.phase === "opening") assert.ok(timers.has("connect"), "opening without a timeout");
      if (m.phase === "closed") break;
    }
    reached.connections += m.metrics.connections;
    reached.reconnects += m.metrics.reconnects;
    reached.resumes += m.metrics.resumesSucceeded;
    reached.handovers += m.metrics.plannedHandovers;
    reached.failed += m.phase === "failed" ? 1 : 0;
  });
}

test("the walks reached the interesting states", () => {
  assert.ok(reached.connections >= 40, JSON.stringify(reached));
  assert.ok(reached.resumes >= 10, JSON.stringify(reached));
  assert.ok(reached.handovers >= 1, JSON.stringify(reached));
  assert.ok(reached.restores >= 1, JSON.stringify(reached)); // drops between turnComplete and its handle
});
