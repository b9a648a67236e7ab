// The seed's browser LiveSession (shared/seed/000_*.txt, lib/LiveSession.ts), translated to
// JavaScript line by line so the browser tests can measure it against the same stack as
// ours. Its bugs are kept: `send` drops silently while disconnected and says "true" into a
// dead socket, a failed token fetch ends the retry chain, six tries then give up, the
// attempt counter resets on open. One change, marked: binary frames are decoded (without
// it `JSON.parse(e.data)` throws on every Google frame and nothing works at all).

export class SeedLiveSession {
  constructor(getToken, wsBase, onMessage, setupExtra = {}, binaryFix = true) {
    this.binaryFix = binaryFix;
    this.ws = null;
    this.resumptionHandle = null;
    this.attempts = 0;
    this.closedByUser = false;
    this.maxAttempts = 6;
    this.base = 1000;
    this.getToken = getToken;
    this.wsBase = wsBase;
    this.onMessage = onMessage;
    this.setupExtra = setupExtra;
  }

  async connect() {
    this.closedByUser = false;
    await this.open();
  }

  async open() {
    const token = await this.getToken(); // always a fresh token
    const ws = new WebSocket(`${this.wsBase}?access_token=${token}`);
    if (this.binaryFix) ws.binaryType = "arraybuffer"; // CHANGED: the binary-frame fix (see the header)
    ws.onopen = () => {
      this.attempts = 0;
      ws.send(
        JSON.stringify({
          setup: {
            model: "models/gemini-2.5-flash",
            generationConfig: { responseModalities: ["AUDIO"] },
            ...this.setupExtra,
            sessionResumption: this.resumptionHandle ? { handle: this.resumptionHandle } : {},
          },
        }),
      );
    };
    ws.onmessage = (e) => {
      const text = !this.binaryFix || typeof e.data === "string" ? e.data : new TextDecoder().decode(e.data); // CHANGED
      const msg = JSON.parse(text); // the seed's own line: throws on a Blob without the fix
      const update = msg.sessionResumptionUpdate;
      if (update?.resumable && update.newHandle) {
        this.resumptionHandle = update.newHandle;
      }
      if ("goAway" in msg) {
        this.reconnectSoon();
        return;
      }
      this.onMessage(msg);
    };
    ws.onclose = () => {
      this.ws = null;
      if (!this.closedByUser) this.reconnectSoon();
    };
    ws.onerror = (err) => console.error("ws error", err);
    this.ws = ws;
  }

  reconnectSoon() {
    if (this.attempts >= this.maxAttempts) {
      console.error("reconnect limit reached; prompt the user to resume manually");
      return;
    }
    const delay = this.base * 2 ** this.attempts + Math.random() * 500;
    this.attempts++;
    setTimeout(() => this.open(), delay);
  }

  send(data) {
    if (this.ws?.readyState !== WebSocket.OPEN) return false; // silently drop while disconnected
    this.ws.send(JSON.stringify(data));
    return true;
  }

  disconnect() {
    this.closedByUser = true;
    this.ws?.close();
    this.ws = null;
  }
}
