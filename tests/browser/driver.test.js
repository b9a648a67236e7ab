// The browser driver (client.js) with a scripted WebSocket: frame decoding and order,
// handshake failures, the send-stall watchdog, token-getter errors, handle storage.
// Real Chromium runs the same driver in test_chromium_*.py; this pins the details.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { LiveSession, TokenError } from "../../src/tunnelproof/browser/client.js";

class FakeSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.bufferedAmount = 0;
    this.binaryType = "blob";
    this.closedWith = null;
  }
  send(text) {
    this.sent.push(text);
  }
  close(code, reason) {
    if (this.readyState >= 2) return;
    this.closedWith = { code, reason };
    this.readyState = 2;
    // As a browser does: the close event follows, asynchronously. (Without it the driver's
    // timers for this socket ran on until the machine's close timeout, keeping node alive.)
    setTimeout(() => this.drop(code ?? 1005, reason ?? ""), 0);
  }
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  frame(data) {
    this.onmessage?.({ data });
  }
  drop(code = 1006, reason = "") {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

class MemoryStorage {
  constructor() {
    this.map = new Map();
  }
  getItem(k) {
    return this.map.has(k) ? this.map.get(k) : null;
  }
  setItem(k, v) {
    this.map.set(k, String(v));
  }
  removeItem(k) {
    this.map.delete(k);
  }
}

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));
const credential = () => ({
  token: "auth_tokens/secret-token",
  wsUrl: "ws://127.0.0.1:1/ws/x",
  expiresAt: new Date(Date.now() + 1800e3).toISOString(),
  newSessionExpiresAt: new Date(Date.now() + 60e3).toISOString(),
  model: "gemini-3.8-live",
});

function session(options = {}) {
  // Each session has its own socket list, so sessions in concurrently running tests
  // (the real-time watchdog tests below) never see each other's sockets.
  const sockets = [];
  class Socket extends FakeSocket {
    constructor(url) {
      super(url);
      sockets.push(this);
    }
  }
  const log = [];
  const live = new LiveSession({
    getToken: async () => credential(),
    WebSocket: /** @type {any} */ (Socket),
    storage: new MemoryStorage(),
    ...options,
  });
  live.on("*", (e) => log.push(e));
  return { live, log, socket: () => sockets.at(-1) };
}

async function connect(s) {
  s.live.start();
  await tick();
  s.socket().open();
  s.socket().frame(new TextEncoder().encode('{"setupComplete":{}}').buffer);
  await tick();
}

test("binary frames (ArrayBuffer) connect; the setup uses the token's locked model", async () => {
  const s = session();
  await connect(s);
  assert.equal(s.socket().binaryType, "arraybuffer");
  assert.match(s.socket().url, /access_token=auth_tokens%2Fsecret-token$/);
  const setup = JSON.parse(s.socket().sent[0]).setup;
  assert.equal(setup.model, "models/gemini-3.8-live");
  assert.deepEqual(setup.sessionResumption, {});
  assert.equal(s.live.state, "connected");
  assert.equal(s.log[0].type, "connected");
  s.live.close();
});

test("a Blob frame followed by a text frame is handled in arrival order", async () => {
  const s = session({ config: { modality: "TEXT" } });
  await connect(s);
  s.socket().frame(new Blob(['{"serverContent":{"modelTurn":{"parts":[{"text":"first "}]}}}']));
  s.socket().frame('{"serverContent":{"modelTurn":{"parts":[{"text":"second"}]}}}');
  await tick(20);
  const texts = s.log.filter((e) => e.type === "text").map((e) => e.text);
  assert.deepEqual(texts, ["first ", "second"]);
  s.live.close();
});

test("a socket that closes before opening is the network: probe, no backoff", async () => {
  const s = session();
  s.live.start();
  await tick();
  s.socket().drop(1006);
  await tick();
  const rec = s.log.find((e) => e.type === "reconnecting");
  assert.equal(rec.kind, "offline");
  assert.ok(rec.delay < 1);
  s.live.close();
});

test("token getter errors are classified: TokenError('auth') fails, a TypeError probes", async () => {
  const auth = session({ getToken: async () => { throw new TokenError("auth", "HTTP 401"); } });
  auth.live.start();
  await tick(5);
  const failed = auth.log.find((e) => e.type === "failed");
  assert.equal(failed.verdict.kind, "fatal_auth");
  const offline = session({ getToken: async () => { throw new TypeError("Failed to fetch"); } });
  offline.live.start();
  await tick(5);
  assert.equal(offline.log.find((e) => e.type === "reconnecting").kind, "offline");
  offline.live.close();
});

test("the handle (never the token) is stored and a new page resumes with it", async () => {
  const storage = new MemoryStorage();
  const a = session({ storage, conversationId: "c1" });
  await connect(a);
  a.socket().frame('{"sessionResumptionUpdate":{"newHandle":"h-42","resumable":true}}');
  await tick();
  const raw = storage.getItem("tunnelproof:c1");
  assert.ok(raw && raw.includes("h-42") && !raw.includes("secret-token"));
  const b = session({ storage, conversationId: "c1" });
  b.live.start();
  await tick();
  b.socket().open();
  assert.deepEqual(JSON.parse(b.socket().sent[0]).setup.sessionResumption, { handle: "h-42" });
  // Past its validity (2 h after the disconnect), a stored handle is not used.
  storage.setItem("tunnelproof:c1", JSON.stringify({ handle: "h-old", savedAt: Date.now() / 1000 - 8000, disconnectedAt: Date.now() / 1000 - 7300, transcript: [] }));
  const c = session({ storage, conversationId: "c1" });
  c.live.start();
  await tick();
  c.socket().open();
  assert.deepEqual(JSON.parse(c.socket().sent[0]).setup.sessionResumption, {});
  a.live.close();
  b.live.close();
  c.live.close();
});

test("send results: queued while connecting, then flushed after setupComplete", async () => {
  const s = session();
  s.live.start();
  const r = s.live.sendText("typed before the session was ready");
  assert.equal(r.status, "queued");
  await tick();
  s.socket().open();
  assert.equal(s.socket().sent.length, 1); // only the setup
  s.socket().frame('{"setupComplete":{}}');
  await tick();
  assert.match(s.socket().sent[1], /typed before the session was ready/);
  assert.throws(() => s.live.send({ setup: {} }), TypeError);
  assert.throws(() => s.live.sendToolResponse([{ id: "", name: "f" }]), TypeError);
  s.live.close();
});

// These wait out real-time watchdogs (the driver polls on 250/500 ms intervals), so they
// run concurrently: the file takes as long as the longest of them, not their sum. Each has
// its own session and sockets.
describe("real-time watchdogs", { concurrency: true }, () => {
  test("a send buffer that stops draining is a dead link even with nothing owed", async () => {
    const s = session({ watchdogs: { sendStallTimeout: 1 } });
    await connect(s);
    s.live.sendAudio(new Int16Array(1600)); // 100 ms of the user talking: no reply is due
    s.socket().bufferedAmount = 5000; // ...and the kernel stops taking bytes
    await tick(1800);
    const rec = s.log.find((e) => e.type === "reconnecting");
    assert.ok(rec, "no dead link found");
    assert.match(rec.reason, /send buffer/);
    assert.equal(rec.kind, "offline");
    assert.equal(s.live.metrics.deadLinksDetected, 1);
    s.live.close();
  });

  test("a draining send buffer is no alarm", async () => {
    const s = session({ watchdogs: { sendStallTimeout: 1 } });
    await connect(s);
    for (let i = 0; i < 4; i++) {
      s.live.sendAudio(new Int16Array(1600));
      s.socket().bufferedAmount = 2000 - i * 400; // backlog, but shrinking
      await tick(400);
    }
    assert.equal(s.log.filter((e) => e.type === "reconnecting").length, 0);
    s.live.close();
  });

  test("an overdue reply asks for a link check; a draining send buffer answers it alive", async () => {
    const s = session({ watchdogs: { replyTimeout: 0.3, linkCheckTimeout: 0.8, sendStallTimeout: 30 } });
    await connect(s);
    try {
      s.live.sendText("think hard about this");
      s.socket().bufferedAmount = 3000; // a backlog when the check starts
      await tick(600);
      assert.equal(s.live.metrics.linkChecks, 1);
      s.socket().bufferedAmount = 1000; // the kernel takes bytes: the link is alive
      await tick(900); // without that evidence the link would have counted dead at ~1.1 s
      assert.equal(s.log.filter((e) => e.type === "reconnecting").length, 0);
      assert.equal(s.live.metrics.deadLinksDetected, 0);
      assert.ok(s.live.metrics.linkChecks >= 2, "the reply watchdog was not re-armed after the check");
    } finally {
      s.live.close(); // also when an assertion fails: no timers left to keep node alive
    }
  });

  test("no sign of life within the link-check timeout is a dead link: reconnect at once", async () => {
    const s = session({ watchdogs: { replyTimeout: 0.3, linkCheckTimeout: 0.5, sendStallTimeout: 30 } });
    await connect(s);
    s.live.sendText("are you there?");
    s.socket().bufferedAmount = 3000; // stuck: nothing drains, no frame arrives
    await tick(1100);
    const rec = s.log.find((e) => e.type === "reconnecting");
    assert.ok(rec, "no dead link found");
    assert.match(rec.reason, /no sign of life/);
    assert.equal(rec.kind, "offline");
    assert.equal(rec.delay, 0);
    assert.equal(s.live.metrics.deadLinksDetected, 1);
    s.live.close();
  });
});
