// Type-checked by `tsc --checkJs --strict` (tsconfig.json includes this file): the public
// API's JSDoc types are precise enough for an app's editor. Never run.

import { LiveSession, TokenError } from "../../src/tunnelproof/browser/client.js";

export function typedUsage() {
  const live = new LiveSession({ config: { outputAudioTranscription: true }, tokenUrl: "/api/live/token" });
  live.on("resumed", (e) => {
    /** @type {number} */
    const gap = e.gap;
    /** @type {number} */
    const replayed = e.replayed;
    return gap + replayed;
  });
  live.on("reconnecting", (e) => {
    /** @type {"offline"|"server"} */
    const kind = e.kind;
    return kind;
  });
  live.on("failed", (e) => e.advice.toUpperCase());
  live.on("toolCall", (e) => {
    /** @type {string[]} */
    const reissued = e.reissued;
    return reissued.length + e.calls.length;
  });
  live.on("sendDropped", (e) => e.audioMs.toFixed(0));
  live.reseed();
  // @ts-expect-error a `connected` event has no gap
  live.on("connected", (e) => e.gap);
  // @ts-expect-error there is no such event
  live.on("reconnected", () => undefined);
  const result = live.sendText("hi");
  /** @type {"sent"|"queued"|"dropped"} */
  const status = result.status;
  // @ts-expect-error sendText takes a string
  live.sendText(42);
  /** @type {string} */
  const state = live.state;
  return [status, state, new TokenError("auth", "no")];
}
