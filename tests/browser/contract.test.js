// The shared client-contract scenarios (tests/contract/scenarios.json), run against the
// browser machine. The Python runner (tests/contract/test_contract_scenarios.py) runs the
// same table against the Python SessionMachine; the matching rules are the same.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { SessionMachine } from "../../src/tunnelproof/browser/machine.js";

const TABLE = JSON.parse(readFileSync(new URL("../contract/scenarios.json", import.meta.url), "utf8"));
const WALL0 = 1_800_000_000;
const MODEL = "gemini-3.8-live";

/** A seeded uniform [0, 1) (mulberry32), so a failure reproduces. */
function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function normalizeEvent(e) {
  switch (e.type) {
    case "failed":
      return { type: e.type, kind: e.verdict.kind, code: e.verdict.code, advice: e.advice };
    case "audio":
      return { type: e.type, bytes: e.pcm.length, mimeType: e.mimeType };
    case "toolCall":
      return { type: e.type, ids: e.calls.map((c) => c.id), reissued: e.reissued };
    case "goAway":
      return { type: e.type, timeLeft: e.timeLeft };
    default:
      return { ...e };
  }
}

function normalizeAction(a, now) {
  switch (a.type) {
    case "fetchToken":
      return { type: a.type, prefetch: a.prefetch };
    case "cancelTokenFetch":
    case "openSocket":
    case "abortSocket":
    case "deleteHandle":
    case "checkLink":
      return { type: a.type };
    case "sendFrame":
      return { type: a.type, message: JSON.parse(a.text) };
    case "closeSocket":
      return { type: a.type, code: a.code, reason: a.reason };
    case "setTimer":
      return { type: a.type, name: a.name, delay: Math.round((a.at - now) * 1e6) / 1e6 };
    case "cancelTimer":
      return { type: a.type, name: a.name };
    case "saveHandle":
      return { type: a.type, handle: a.session.handle, turns: a.session.transcript.length };
    case "emit":
      return { type: a.type, event: normalizeEvent(a.event) };
    default:
      throw new Error(`unknown action ${a.type}`);
  }
}

export function matches(pattern, actual) {
  if (pattern !== null && typeof pattern === "object" && !Array.isArray(pattern)) {
    if (typeof actual === "number" && ("min" in pattern || "max" in pattern)) {
      return (pattern.min ?? -Infinity) - 1e-9 <= actual && actual <= (pattern.max ?? Infinity) + 1e-9;
    }
    if ("contains" in pattern && typeof actual === "string") return actual.includes(String(pattern.contains));
    if (actual === null || typeof actual !== "object" || Array.isArray(actual)) return false;
    const keys = Object.keys(pattern);
    if (!keys.length) return Object.keys(actual).length === 0;
    return keys.every((k) => k in actual && matches(pattern[k], actual[k]));
  }
  if (Array.isArray(pattern)) {
    return Array.isArray(actual) && pattern.length === actual.length && pattern.every((p, i) => matches(p, actual[i]));
  }
  if (typeof pattern === "number" && typeof actual === "number") return Math.abs(pattern - actual) < 1e-6;
  return pattern === actual;
}

class Runner {
  constructor(scenario) {
    this.machine = new SessionMachine(
      { model: MODEL, modality: scenario.modality ?? "AUDIO", sessionResumption: scenario.sessionResumption ?? true },
      { policy: scenario.policy, watchdogs: scenario.watchdogs, limits: scenario.limits, transcriptBytes: scenario.transcriptBytes, random: seeded(7) },
    );
    this.now = 0;
    this.timers = new Map();
    this.request = 0;
    this.attempt = 0;
    this.tokens = 0;
  }

  get clock() {
    return { now: this.now, wall: WALL0 + this.now };
  }

  track(actions) {
    for (const a of actions) {
      if (a.type === "fetchToken") this.request = a.request;
      else if (a.type === "openSocket") this.attempt = a.attempt;
      else if (a.type === "setTimer") this.timers.set(a.name, [a.serial, a.at]);
      else if (a.type === "cancelTimer") this.timers.delete(a.name);
    }
  }

  step(step) {
    const m = this.machine;
    const wall = WALL0 + this.now;
    let event;
    if ("start" in step) {
      const s = step.start.stored;
      event = {
        type: "started",
        stored: s
          ? { handle: s.handle, savedAt: wall - s.disconnectedAgo, disconnectedAt: wall - s.disconnectedAgo, transcript: s.transcript }
          : null,
      };
    } else if ("token" in step) {
      this.tokens += 1;
      event = {
        type: "tokenFetched",
        request: this.request,
        credential: {
          token: `auth_tokens/t${this.tokens}`,
          wsUrl: "ws://127.0.0.1:9/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained",
          expiresAt: wall + 1800,
          newSessionExpiresAt: wall + 60,
        },
      };
    } else if ("tokenFail" in step) {
      const f = step.tokenFail;
      event = { type: "tokenFailed", request: this.request, kind: f.kind, message: f.message ?? "", retryAfter: f.retryAfter ?? null };
    } else if ("open" in step) {
      event = { type: "socketOpened", attempt: this.attempt };
    } else if ("openFail" in step) {
      const f = step.openFail;
      event = { type: "socketOpenFailed", attempt: this.attempt, kind: f.kind, status: f.status ?? null, message: f.message ?? "" };
    } else if ("frame" in step) {
      const text = JSON.stringify(step.frame);
      event = { type: "frameReceived", attempt: this.attempt, data: step.binary ? new TextEncoder().encode(text).buffer : text };
    } else if ("close" in step) {
      event = { type: "socketClosed", attempt: this.attempt, code: step.close.code ?? null, reason: step.close.reason ?? "" };
    } else if ("fire" in step) {
      const [serial, at] = this.timers.get(step.fire);
      this.timers.delete(step.fire);
      this.now = Math.max(this.now, at);
      event = { type: "timerFired", name: step.fire, serial };
    } else if ("advance" in step) {
      this.now += step.advance;
      return [[], null];
    } else if ("send" in step) {
      const [result, actions] = m.send(step.send, this.clock);
      this.track(actions);
      return [actions, { status: result.status, reason: result.reason }];
    } else if ("linkChecked" in step) {
      const c = step.linkChecked;
      event = { type: "linkChecked", attempt: this.attempt, alive: c.alive, detail: c.detail ?? "" };
    } else if ("closeSession" in step) {
      event = { type: "closeRequested" };
    } else if ("resumeRequested" in step) {
      event = { type: "resumeRequested" };
    } else if ("reseedRequested" in step) {
      event = { type: "reseedRequested" };
    } else {
      throw new Error(`unknown step ${JSON.stringify(step)}`);
    }
    const actions = m.handle(event, this.clock);
    this.track(actions);
    return [actions, null];
  }
}

const snake = (name) => name.replace(/(?<!^)(?=[A-Z])/g, "_").toLowerCase();

for (const scenario of TABLE.scenarios) {
  test(`contract: ${scenario.name}`, () => {
    const runner = new Runner(scenario);
    scenario.steps.forEach((step, index) => {
      const [actions, result] = runner.step(step);
      const got = actions.map((a) => normalizeAction(a, runner.now));
      const where = `step ${index} ${JSON.stringify(step).slice(0, 160)}\nactions: ${JSON.stringify(got)}`;
      let position = 0;
      for (const pattern of step.expect ?? []) {
        while (position < got.length && !matches(pattern, got[position])) position += 1;
        assert.ok(position < got.length, `expected ${JSON.stringify(pattern)} (in order) at ${where}`);
        position += 1;
      }
      for (const pattern of step.absent ?? []) {
        assert.ok(!got.some((a) => matches(pattern, a)), `unexpected ${JSON.stringify(pattern)} at ${where}`);
      }
      if ("result" in step) {
        // A status, or a pattern over {status, reason}.
        const expected = typeof step.result === "string" ? { status: step.result } : step.result;
        assert.ok(result !== null && matches(expected, result), `result ${JSON.stringify(result)} at ${where}`);
      }
      if ("state" in step) assert.equal(runner.machine.state, step.state, where);
      if ("handle" in step) assert.equal(runner.machine.resumptionHandle, step.handle, where);
      for (const [name, value] of Object.entries(step.metrics ?? {})) {
        assert.equal(runner.machine.metrics[name], value, `metric ${name} (${snake(name)}) at ${where}`);
      }
    });
  });
}

test("contract table covers every contract point", () => {
  const covered = new Set(TABLE.scenarios.flatMap((s) => s.contract));
  for (let p = 1; p <= 9; p++) assert.ok(covered.has(p), `contract point ${p} has no scenario`);
});

test("the matcher can fail", () => {
  assert.equal(matches({ a: 1 }, { a: 2 }), false);
  assert.equal(matches({}, { handle: "h" }), false);
  assert.equal(matches({ min: 0, max: 0.5 }, 0.6), false);
  assert.equal(matches({ contains: "model" }, "no such word"), false);
  assert.equal(matches([1], [1, 2]), false);
  assert.equal(matches({ a: { min: 1 } }, { a: 3, b: 4 }), true);
});
