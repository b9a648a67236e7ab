// The browser machine's outbox bounds are checked when it is built, like the Python
// OutboxLimits (tests/session/test_send_refusals.py): a zero bound refused every send and
// a NaN one compared false, so the queue grew without limit.

import { test } from "node:test";
import assert from "node:assert/strict";
import { SessionMachine } from "../../src/tunnelproof/browser/machine.js";
import { DEFAULT_LIMITS, MAX_CLIENT_FRAME_BYTES, Outbox } from "../../src/tunnelproof/browser/outbox.js";

const BAD = [
  ["maxAudioMs", 0],
  ["maxAudioMs", -5],
  ["maxAudioMs", NaN],
  ["audioTtl", 0],
  ["audioTtl", Infinity],
  ["maxMessages", 0],
  ["maxMessages", -1],
  ["maxBytes", 0],
  ["maxBytes", NaN],
  ["maxBytes", MAX_CLIENT_FRAME_BYTES + 1],
  ["maxUnconfirmedMessages", 0],
  ["maxUnconfirmedMessages", 2.5],
];

for (const [name, value] of BAD) {
  test(`OutboxLimits.${name} = ${value} is refused`, () => {
    assert.throws(() => new Outbox({ ...DEFAULT_LIMITS, [name]: value }), {
      name: "RangeError",
      message: new RegExp(`^OutboxLimits\\.${name} must be`),
    });
    assert.throws(() => new SessionMachine({ model: "gemini-3.8-live" }, { limits: { [name]: value } }), RangeError);
  });
}

test("the default and sensible limits are accepted", () => {
  assert.ok(new Outbox(DEFAULT_LIMITS));
  assert.ok(new Outbox({ ...DEFAULT_LIMITS, maxBytes: MAX_CLIENT_FRAME_BYTES, audioTtl: 0.5 }));
});
