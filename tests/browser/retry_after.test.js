// Reading a shed answer's wait in the browser: retry-after-ms (the token service's own slot
// for this client, to the millisecond) before Retry-After, when it is sane. Mirrors
// tests/session/test_retry_after.py for session/retry_after.py.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  MAX_RETRY_AFTER_MS_SECONDS,
  TokenError,
  parseRetryAfter,
  parseRetryAfterMs,
  retryAfterFrom,
  tokenRouteGetter,
} from "../../src/tunnelproof/browser/client.js";

const NOW = Date.parse("2026-11-25T09:00:00Z");

describe("Retry-After", () => {
  test("delta-seconds and HTTP-dates", () => {
    assert.equal(parseRetryAfter("7", NOW), 7);
    assert.equal(parseRetryAfter(" 2 ", NOW), 2);
    assert.equal(parseRetryAfter("-3", NOW), 0);
    assert.equal(parseRetryAfter(null, NOW), null);
    assert.equal(parseRetryAfter("", NOW), null);
    assert.equal(parseRetryAfter("soon", NOW), null);
    assert.equal(parseRetryAfter("1e400", NOW), null);
    assert.equal(parseRetryAfter(new Date(NOW + 30_000).toUTCString(), NOW), 30);
    assert.equal(parseRetryAfter(new Date(NOW - 30_000).toUTCString(), NOW), 0);
  });
});

describe("retry-after-ms", () => {
  test("is milliseconds", () => {
    assert.equal(parseRetryAfterMs("250"), 0.25);
    assert.equal(parseRetryAfterMs("1"), 0.001);
    assert.equal(parseRetryAfterMs("0"), 0);
    assert.equal(parseRetryAfterMs(" 1500.5 "), 1.5005);
    assert.equal(parseRetryAfterMs("3600000"), 3600);
  });
  test("that is not sane is ignored", () => {
    for (const value of [null, undefined, "", " ", "soon", "-5", "NaN", "Infinity", "1e400", String(MAX_RETRY_AFTER_MS_SECONDS * 1000 + 1)]) {
      assert.equal(parseRetryAfterMs(value), null, String(value));
    }
  });
});

describe("retryAfterFrom", () => {
  test("prefers the milliseconds when both agree (names are case-insensitive)", () => {
    assert.equal(retryAfterFrom(new Headers({ "Retry-After": "1", "retry-after-ms": "250" }), NOW), 0.25);
    assert.equal(retryAfterFrom(new Headers({ "RETRY-AFTER": "2", "Retry-After-Ms": "1800" }), NOW), 1.8);
  });
  test("reads each header alone", () => {
    assert.equal(retryAfterFrom(new Headers({ "retry-after-ms": "40" }), NOW), 0.04);
    assert.equal(retryAfterFrom(new Headers({ "Retry-After": "3" }), NOW), 3);
    assert.equal(retryAfterFrom(new Headers(), NOW), null);
  });
  test("falls back to Retry-After on a broken or far-off ms hint", () => {
    assert.equal(retryAfterFrom(new Headers({ "Retry-After": "4", "retry-after-ms": "soon" }), NOW), 4);
    assert.equal(retryAfterFrom(new Headers({ "Retry-After": "1", "retry-after-ms": "1900" }), NOW), 1.9);
    assert.equal(retryAfterFrom(new Headers({ "Retry-After": "1", "retry-after-ms": "60000" }), NOW), 1);
  });
});

describe("tokenRouteGetter", () => {
  /** @param {number} status @param {Record<string, string>} headers */
  async function shedWith(status, headers) {
    const real = globalThis.fetch;
    globalThis.fetch = async () => new Response(JSON.stringify({ code: "upstream_unavailable" }), { status, headers });
    try {
      await tokenRouteGetter("/api/live/token")(new AbortController().signal);
    } catch (err) {
      return err;
    } finally {
      globalThis.fetch = real;
    }
    assert.fail("the getter should have thrown");
  }

  test("a 503 carries the service's slot to the millisecond", async () => {
    const err = await shedWith(503, { "Retry-After": "1", "retry-after-ms": "312" });
    assert.ok(err instanceof TokenError);
    assert.equal(err.kind, "unavailable");
    assert.equal(err.retryAfter, 0.312);
  });
  test("a 429 too", async () => {
    const err = await shedWith(429, { "Retry-After": "2", "retry-after-ms": "1500" });
    assert.equal(err.kind, "rate_limited");
    assert.equal(err.retryAfter, 1.5);
  });
  test("a plain Retry-After still works", async () => {
    const err = await shedWith(503, { "Retry-After": "2" });
    assert.equal(err.retryAfter, 2);
  });
});
