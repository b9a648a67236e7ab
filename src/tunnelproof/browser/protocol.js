// tunnelproof browser client: wire protocol helpers (no I/O, no DOM).
//
// The same rules as the Python package's tunnelproof.protocol: server frames parse from
// text *or* bytes (Google sends JSON in binary frames), camelCase or snake_case fields,
// several messages per frame; close codes are classified with advice a person can act on.

/** @typedef {Record<string, any>} Json */

/**
 * @typedef {"retry"|"expected"|"fatal_config"|"fatal_auth"|"bad_request"|"bad_resume"} CloseClass
 * @typedef {{kind: CloseClass, code: number|null, reason: string, advice: string, throttled: boolean}} CloseVerdict
 */

/** A server frame could not be parsed. */
export class ProtocolError extends Error {
  /** @param {string} message @param {number|null} [size] */
  constructor(message, size = null) {
    super(message);
    this.name = "ProtocolError";
    /** @type {number|null} */
    this.size = size;
  }
}

/** @param {string} name */
function toSnake(name) {
  return name.replace(/(?<!^)(?=[A-Z])/g, "_").toLowerCase();
}

/** @param {string} name */
export function toCamel(name) {
  const [head, ...rest] = name.split("_");
  return head + rest.map((p) => p.slice(0, 1).toUpperCase() + p.slice(1)).join("");
}

/** Read `camel` from `obj`, or its snake_case twin. @param {Json} obj @param {string} camel */
export function getField(obj, camel) {
  if (camel in obj) return obj[camel];
  return obj[toSnake(camel)];
}

/** `"50s"` -> 50, `"17.250s"` -> 17.25. @param {unknown} text */
export function parseDuration(text) {
  if (typeof text !== "string") throw new ProtocolError("duration must be a string like '50s'");
  const m = /^(-?)(\d+)(?:\.(\d{1,9}))?s$/.exec(text.trim());
  if (!m) throw new ProtocolError(`not a protobuf duration: ${JSON.stringify(text.slice(0, 40))}`);
  const seconds = Number(m[2]) + (m[3] ? Number(m[3]) / 10 ** m[3].length : 0);
  return m[1] ? -seconds : seconds;
}

const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Decode a frame's payload to text. Binary frames (ArrayBuffer / typed array) are UTF-8
 * JSON: the seed's `JSON.parse(e.data)` broke on them (a Blob stringifies to
 * "[object Blob]"). The driver turns a Blob into an ArrayBuffer before calling this.
 * @param {string|ArrayBuffer|ArrayBufferView} data
 * @returns {{text: string, size: number}}
 */
export function frameText(data) {
  if (typeof data === "string") return { text: data, size: new TextEncoder().encode(data).length };
  const bytes =
    data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  try {
    return { text: decoder.decode(bytes), size: bytes.length };
  } catch {
    throw new ProtocolError("frame is not valid UTF-8", bytes.length);
  }
}

/** @param {unknown} v @returns {v is Json} */
function isObj(v) {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** @param {unknown} value @param {string} where @returns {Json} */
function obj(value, where) {
  if (value === null || value === undefined) return {};
  if (!isObj(value)) throw new ProtocolError(`${where} must be an object`);
  return value;
}

/** @param {Json} o @param {string} name @param {string} where @returns {string|null} */
function str(o, name, where) {
  const v = getField(o, name);
  if (v === undefined || v === null) return null;
  if (typeof v !== "string") throw new ProtocolError(`${where}.${name} must be a string`);
  return v;
}

/** @param {Json} o @param {string} name @param {string} where */
function bool(o, name, where) {
  const v = getField(o, name);
  if (v === undefined || v === null) return false;
  if (typeof v === "boolean") return v;
  if (typeof v === "string" && (v.toLowerCase() === "true" || v.toLowerCase() === "false")) {
    return v.toLowerCase() === "true";
  }
  throw new ProtocolError(`${where}.${name} must be a boolean`);
}

/** @param {Json} o @param {string} name @param {string} where @returns {number|null} */
function int(o, name, where) {
  const v = getField(o, name);
  if (v === undefined || v === null) return null;
  if (typeof v === "number" && Number.isInteger(v)) return v;
  if (typeof v === "string" && /^-?\d+$/.test(v)) return Number(v);
  throw new ProtocolError(`${where}.${name} must be an integer`);
}

/** @param {Json} o @param {string} name @param {string} where @returns {any[]} */
function list(o, name, where) {
  const v = getField(o, name);
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new ProtocolError(`${where}.${name} must be a list`);
  return v;
}

/**
 * @typedef {{text: string|null, inlineData: {mimeType: string, data: string}|null, thought: boolean}} Part
 * @typedef {{id: string, name: string, args: Json}} FunctionCall
 * @typedef {{kind: "setupComplete", sessionId: string|null, keepsTurns: boolean, resumedIntact: boolean}
 *   | {kind: "serverContent", parts: Part[], inputTranscription: {text: string, finished: boolean}|null,
 *      outputTranscription: {text: string, finished: boolean}|null, interrupted: boolean,
 *      generationComplete: boolean, turnComplete: boolean, turnCompleteReason: string|null,
 *      interactionStatus: string|null}
 *   | {kind: "toolCall", functionCalls: FunctionCall[]}
 *   | {kind: "toolCallCancellation", ids: string[]}
 *   | {kind: "goAway", timeLeft: number|null}
 *   | {kind: "sessionResumptionUpdate", newHandle: string|null, resumable: boolean}
 *   | {kind: "usageMetadata", promptTokenCount: number|null, responseTokenCount: number|null, totalTokenCount: number|null}
 *   | {kind: "unknown", name: string, raw: unknown}} ServerMessage
 */

/** @param {Json} o @param {string} name */
function transcription(o, name) {
  const v = getField(o, name);
  if (v === undefined || v === null) return null;
  const inner = obj(v, `serverContent.${name}`);
  return { text: str(inner, "text", name) ?? "", finished: bool(inner, "finished", name) };
}

/** @param {string} key @param {unknown} value @returns {ServerMessage} */
function parseMessage(key, value) {
  const kind = toCamel(key);
  switch (kind) {
    case "setupComplete": {
      const o = obj(value, kind);
      // The tunnelproof relay's note (protocol/relay_setup.py): the turn goes on through a
      // drop of this connection; a resume says whether the device lost any of it.
      const note = getField(o, "tunnelproofRelay");
      const n = note !== null && typeof note === "object" && !Array.isArray(note) ? /** @type {Json} */ (note) : {};
      return {
        kind,
        sessionId: str(o, "sessionId", kind),
        keepsTurns: getField(n, "keepsTurns") === true,
        resumedIntact: getField(n, "resumedIntact") === true,
      };
    }
    case "serverContent": {
      const o = obj(value, kind);
      const turnRaw = getField(o, "modelTurn");
      /** @type {Part[]} */
      const parts = [];
      if (turnRaw !== undefined && turnRaw !== null) {
        for (const p of list(obj(turnRaw, "serverContent.modelTurn"), "parts", "modelTurn")) {
          const part = obj(p, "modelTurn.parts[]");
          const inlineRaw = getField(part, "inlineData");
          let inlineData = null;
          if (inlineRaw !== undefined && inlineRaw !== null) {
            const io = obj(inlineRaw, "inlineData");
            inlineData = { mimeType: str(io, "mimeType", "inlineData") ?? "", data: str(io, "data", "inlineData") ?? "" };
          }
          parts.push({ text: str(part, "text", "part"), inlineData, thought: bool(part, "thought", "part") });
        }
      }
      return {
        kind,
        parts,
        inputTranscription: transcription(o, "inputTranscription"),
        outputTranscription: transcription(o, "outputTranscription"),
        interrupted: bool(o, "interrupted", kind),
        generationComplete: bool(o, "generationComplete", kind),
        turnComplete: bool(o, "turnComplete", kind),
        turnCompleteReason: str(o, "turnCompleteReason", kind),
        interactionStatus: str(o, "interactionStatus", kind),
      };
    }
    case "toolCall": {
      const o = obj(value, kind);
      const functionCalls = list(o, "functionCalls", kind).map((c) => {
        const call = obj(c, "toolCall.functionCalls[]");
        return {
          id: str(call, "id", "functionCall") ?? "",
          name: str(call, "name", "functionCall") ?? "",
          args: obj(getField(call, "args"), "functionCall.args"),
        };
      });
      return { kind, functionCalls };
    }
    case "toolCallCancellation": {
      const ids = list(obj(value, kind), "ids", kind);
      if (!ids.every((i) => typeof i === "string")) throw new ProtocolError("toolCallCancellation.ids must be strings");
      return { kind, ids };
    }
    case "goAway": {
      const t = str(obj(value, kind), "timeLeft", kind);
      return { kind, timeLeft: t === null ? null : parseDuration(t) };
    }
    case "sessionResumptionUpdate": {
      const o = obj(value, kind);
      const resumable = bool(o, "resumable", kind);
      const handle = str(o, "newHandle", kind) || null;
      return { kind, newHandle: resumable ? handle : null, resumable: resumable && handle !== null };
    }
    case "usageMetadata": {
      const o = obj(value, kind);
      return {
        kind,
        promptTokenCount: int(o, "promptTokenCount", kind),
        responseTokenCount: int(o, "responseTokenCount", kind),
        totalTokenCount: int(o, "totalTokenCount", kind),
      };
    }
    default:
      return { kind: "unknown", name: kind, raw: value };
  }
}

/**
 * Parse one server frame (text or binary) into its messages, in key order.
 * @param {string|ArrayBuffer|ArrayBufferView} data
 * @returns {{messages: ServerMessage[], size: number}}
 */
export function parseServerFrame(data) {
  const { text, size } = frameText(data);
  let value;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ProtocolError(`frame is not valid JSON: ${err instanceof Error ? err.message : String(err)}`, size);
  }
  if (!isObj(value)) throw new ProtocolError("frame must be a JSON object", size);
  /** @type {ServerMessage[]} */
  const messages = [];
  for (const [key, v] of Object.entries(value)) {
    try {
      messages.push(parseMessage(key, v));
    } catch (err) {
      if (err instanceof ProtocolError) throw new ProtocolError(err.message, size);
      throw err;
    }
  }
  return { messages, size };
}

/** Base64 to bytes (atob exists in browsers and Node >= 16). @param {string} b64 */
export function base64ToBytes(b64) {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0) {
    throw new ProtocolError("inlineData is not valid base64", b64.length);
  }
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Bytes to base64, in chunks (String.fromCharCode has an argument limit). @param {Uint8Array} bytes */
export function bytesToBase64(bytes) {
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

// -- close codes (tunnelproof/protocol/close_codes.py) ----------------------------------

const RETRY_CODES = new Set([1001, 1006, 1011, 1012, 1013, 1014, 1015]);
const MISUSE_CODES = new Set([1002, 1003, 1009, 1010]);
const AUTH_MARKERS = [
  "api key not valid",
  "api key expired",
  "unregistered callers",
  "unauthenticated",
  "permission denied",
  "permission_denied",
  "token expired",
  "token is expired",
  "invalid authentication credentials",
];
const QUOTA_MARKERS = ["quota", "resource has been exhausted", "resource_exhausted", "throttled"];
const DEADLINE = "deadline expired before operation could complete.";
const NOT_IMPLEMENTED = "operation is not implemented, or supported, or enabled.".slice(0, 30);

/** The Live model the advice suggests when the configured one is retired. */
export const SUGGESTED_MODEL = "gemini-3.8-live";

/**
 * @param {CloseClass} kind @param {number|null} code @param {string} reason @param {string} advice
 * @param {boolean} [throttled]
 * @returns {CloseVerdict}
 */
export function verdict(kind, code, reason, advice, throttled = false) {
  return { kind, code, reason, advice, throttled };
}

/** @param {CloseVerdict} v */
export function isFatal(v) {
  return v.kind === "fatal_config" || v.kind === "fatal_auth" || v.kind === "bad_request";
}

/** @param {string} reason @returns {string|null} */
function modelHint(reason) {
  const low = reason.toLowerCase();
  if (
    !low.includes("not found for api version") &&
    !low.includes("not supported for bidigeneratecontent") &&
    !low.includes("publisher model")
  ) {
    return null;
  }
  const word = reason.split(/\s+/)[0] ?? "";
  const model = word.replace(/^models\//, "") || "(unknown)";
  return (
    `The model '${model}' is not available for the Live API on this API version. ` +
    `Configure a current Live model, e.g. '${SUGGESTED_MODEL}'.`
  );
}

/**
 * Classify a WebSocket close from the server (same table as the Python client).
 * @param {number|null} code @param {string} [reason]
 * @param {{resuming?: boolean, afterGoAway?: boolean}} [opts]
 * @returns {CloseVerdict}
 */
export function classifyClose(code, reason = "", opts = {}) {
  const text = reason || "";
  const low = text.toLowerCase();
  if (code === null || code === 1006 || code === 1005) {
    return verdict("retry", code, text, "The connection dropped; reconnecting.");
  }
  if (AUTH_MARKERS.some((m) => low.includes(m))) {
    return verdict(
      "fatal_auth",
      code,
      text,
      "The server rejected the credentials. Check the API key or the token service; a user token may need a new sign-in.",
    );
  }
  if (code === 1000) return verdict("expected", code, text, "The server closed normally; resuming.");
  if (code === 1011 && (opts.afterGoAway || low.includes(DEADLINE))) {
    return verdict("expected", code, text, "The connection reached its lifetime limit; resuming.");
  }
  if (RETRY_CODES.has(code) || (code >= 4000 && code <= 4999) || code < 1000 || code > 1015) {
    const throttled = QUOTA_MARKERS.some((m) => low.includes(m));
    return verdict(
      "retry",
      code,
      text,
      throttled
        ? "The server is over quota or overloaded; retrying with backoff."
        : "The server closed the connection with an error; retrying.",
      throttled,
    );
  }
  if (code === 1008) {
    const hint = modelHint(text);
    if (hint !== null) return verdict("fatal_config", code, text, hint);
    if (low.includes(NOT_IMPLEMENTED)) {
      return verdict(
        "fatal_config",
        code,
        text,
        "The model does not support a feature in this session's config (e.g. a modality, proactivity or affective dialog). Remove it or pick another model.",
      );
    }
    if (opts.resuming) {
      return verdict("bad_resume", code, text, "The server refused the resumption handle; starting a fresh session.");
    }
    return verdict(
      "fatal_config",
      code,
      text,
      "The server refused this session's setup (policy violation). Check the model and config.",
    );
  }
  if (code === 1007) {
    if (opts.resuming) {
      return verdict(
        "bad_resume",
        code,
        text,
        "The server rejected the resumed session's state; starting a fresh session re-seeded from the transcript.",
      );
    }
    return verdict(
      "bad_request",
      code,
      text,
      "The server rejected a message as invalid (a setup field, a deprecated mediaChunks, or a second setup). Fix the config or the message.",
    );
  }
  if (MISUSE_CODES.has(code)) {
    return verdict("bad_request", code, text, "The server rejected the frames we sent (protocol error or message too big).");
  }
  return verdict("retry", code, text, "Unrecognised close; retrying with backoff.");
}

/**
 * Classify an HTTP status that refused the upgrade (browsers rarely expose it).
 * @param {number} status @param {string} [reason] @returns {CloseVerdict}
 */
export function classifyHandshakeStatus(status, reason = "") {
  if (status === 401 || status === 403) {
    return verdict(
      "fatal_auth",
      null,
      reason,
      `The server refused the handshake with HTTP ${status}: the credential is invalid, expired or already used.`,
    );
  }
  if (status === 404) {
    return verdict("fatal_config", null, reason, "HTTP 404 on the Live endpoint: check the base URL and API version.");
  }
  if (status === 429) return verdict("retry", null, reason, "Rate limited; retrying.", true);
  if (status >= 500) return verdict("retry", null, reason, `HTTP ${status}; retrying.`);
  return verdict("bad_request", null, reason, `The server refused the handshake with HTTP ${status}.`);
}
