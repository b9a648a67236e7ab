// tunnelproof browser client: audio in the page.
//
//   * MicCapture: microphone -> 16 kHz 16-bit mono PCM chunks through an AudioWorklet
//     (the AudioContext runs at 16 kHz, so the browser resamples the device for us);
//   * AudioPlayer: the model's 24 kHz PCM through an AudioWorklet with a small jitter
//     buffer (playback starts once `jitterMs` is queued, and re-buffers after a gap), and
//     `flush()` for barge-in (stop at once when the server says `interrupted`);
//   * connectAudio(session, ...): wires both to a LiveSession.
//
// The worklet code is loaded from a Blob URL, so the module stays one import with no extra
// files; a page whose CSP forbids `blob:` worklets can pass its own `workletUrl`.

const CAPTURE = `
class TunnelproofCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.size = options.processorOptions.chunkSamples;
    this.buf = new Int16Array(this.size);
    this.fill = 0;
  }
  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (ch) {
      for (let i = 0; i < ch.length; i++) {
        const s = Math.max(-1, Math.min(1, ch[i]));
        this.buf[this.fill++] = s < 0 ? s * 0x8000 : s * 0x7fff;
        if (this.fill === this.size) {
          this.port.postMessage(this.buf.buffer, [this.buf.buffer]);
          this.buf = new Int16Array(this.size);
          this.fill = 0;
        }
      }
    }
    return true;
  }
}
registerProcessor("tunnelproof-capture", TunnelproofCapture);

class TunnelproofPlayback extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.jitter = options.processorOptions.jitterSamples;
    this.queue = [];
    this.offset = 0;
    this.queued = 0;
    this.playing = false;
    this.played = 0;
    this.port.onmessage = (e) => {
      if (e.data === "flush") {
        this.port.postMessage({ flushed: this.queued });
        this.queue = [];
        this.offset = 0;
        this.queued = 0;
        this.playing = false;
        return;
      }
      const pcm = new Int16Array(e.data);
      this.queue.push(pcm);
      this.queued += pcm.length;
    };
  }
  process(_inputs, outputs) {
    const out = outputs[0][0];
    if (!this.playing && this.queued >= this.jitter) this.playing = true;
    let i = 0;
    if (this.playing) {
      while (i < out.length && this.queue.length) {
        const head = this.queue[0];
        const n = Math.min(out.length - i, head.length - this.offset);
        for (let k = 0; k < n; k++) out[i + k] = head[this.offset + k] / 0x8000;
        i += n;
        this.offset += n;
        this.queued -= n;
        this.played += n;
        if (this.offset === head.length) {
          this.queue.shift();
          this.offset = 0;
        }
      }
      if (!this.queue.length) {
        this.playing = false; // underrun: re-buffer before playing again
        this.port.postMessage({ played: this.played });
      }
    }
    for (; i < out.length; i++) out[i] = 0;
    return true;
  }
}
registerProcessor("tunnelproof-playback", TunnelproofPlayback);
`;

/** @type {WeakMap<BaseAudioContext, Promise<void>>} */
const loaded = new WeakMap();

/** @param {AudioContext} ctx @param {string} [workletUrl] */
function loadWorklets(ctx, workletUrl) {
  let p = loaded.get(ctx);
  if (!p) {
    const url = workletUrl ?? URL.createObjectURL(new Blob([CAPTURE], { type: "text/javascript" }));
    p = ctx.audioWorklet.addModule(url);
    loaded.set(ctx, p);
  }
  return p;
}

/** Microphone capture at 16 kHz, delivered as Int16Array chunks. */
export class MicCapture {
  /**
   * @param {(pcm: Int16Array) => void} onChunk
   * @param {{chunkMs?: number, sampleRate?: number, workletUrl?: string, constraints?: MediaTrackConstraints}} [options]
   */
  constructor(onChunk, options = {}) {
    this.onChunk = onChunk;
    this.sampleRate = options.sampleRate ?? 16000;
    this.chunkMs = options.chunkMs ?? 40;
    this.options = options;
    /** @type {AudioContext|null} */
    this.ctx = null;
    /** @type {MediaStream|null} */
    this.stream = null;
    /** @type {AudioWorkletNode|null} */
    this.node = null;
    this.chunks = 0;
  }

  /** Ask for the microphone and start delivering chunks. */
  async start() {
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, ...this.options.constraints },
    });
    this.ctx = new AudioContext({ sampleRate: this.sampleRate });
    await loadWorklets(this.ctx, this.options.workletUrl);
    const source = this.ctx.createMediaStreamSource(this.stream);
    this.node = new AudioWorkletNode(this.ctx, "tunnelproof-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 0,
      processorOptions: { chunkSamples: Math.round((this.sampleRate * this.chunkMs) / 1000) },
    });
    this.node.port.onmessage = (e) => {
      this.chunks += 1;
      this.onChunk(new Int16Array(e.data));
    };
    source.connect(this.node);
    if (this.ctx.state === "suspended") await this.ctx.resume();
  }

  /** Stop the microphone. */
  async stop() {
    this.node?.disconnect();
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    await this.ctx?.close();
    this.ctx = null;
    this.node = null;
    this.stream = null;
  }
}

/** Playback of 24 kHz 16-bit PCM with a small jitter buffer and barge-in. */
export class AudioPlayer {
  /** @param {{sampleRate?: number, jitterMs?: number, workletUrl?: string}} [options] */
  constructor(options = {}) {
    this.sampleRate = options.sampleRate ?? 24000;
    this.jitterMs = options.jitterMs ?? 80;
    this.options = options;
    /** @type {AudioContext|null} */
    this.ctx = null;
    /** @type {AudioWorkletNode|null} */
    this.node = null;
    /** @type {Promise<void>|null} */
    this.ready = null;
    /** Samples handed to the worklet / reported played / dropped by barge-in. */
    this.queuedSamples = 0;
    this.playedSamples = 0;
    this.flushedSamples = 0;
  }

  /** Create the audio graph (call from a user gesture where autoplay rules apply). */
  start() {
    if (!this.ready) {
      this.ctx = new AudioContext({ sampleRate: this.sampleRate });
      const ctx = this.ctx;
      this.ready = loadWorklets(ctx, this.options.workletUrl).then(async () => {
        this.node = new AudioWorkletNode(ctx, "tunnelproof-playback", {
          numberOfInputs: 0,
          outputChannelCount: [1],
          processorOptions: { jitterSamples: Math.round((this.sampleRate * this.jitterMs) / 1000) },
        });
        this.node.port.onmessage = (e) => {
          if (typeof e.data?.played === "number") this.playedSamples = e.data.played;
          if (typeof e.data?.flushed === "number") this.flushedSamples += e.data.flushed;
        };
        this.node.connect(ctx.destination);
        if (ctx.state === "suspended") await ctx.resume().catch(() => undefined);
      });
    }
    return this.ready;
  }

  /** Queue one chunk of model audio. @param {Uint8Array} pcm 16-bit little-endian */
  push(pcm) {
    const samples = new Int16Array(pcm.byteLength >> 1);
    new Uint8Array(samples.buffer).set(pcm.subarray(0, samples.length * 2));
    this.queuedSamples += samples.length;
    void this.start().then(() => this.node?.port.postMessage(samples.buffer, [samples.buffer]));
  }

  /** Barge-in: drop everything queued and stop at once. */
  flush() {
    void this.start().then(() => this.node?.port.postMessage("flush"));
  }

  async close() {
    await this.ctx?.close();
    this.ctx = null;
    this.node = null;
    this.ready = null;
  }
}

/**
 * Wire audio to a session: model audio plays, `interrupted` stops playback (barge-in), and
 * with `mic` the microphone streams to `sendAudio`. Returns a function that undoes it.
 * @param {{on: (type: any, fn: (e: any) => void) => () => void, sendAudio: (pcm: Int16Array, rate?: number) => unknown}} session
 * @param {{mic?: boolean, player?: AudioPlayer, capture?: {chunkMs?: number, workletUrl?: string}}} [options]
 */
export async function connectAudio(session, options = {}) {
  const player = options.player ?? new AudioPlayer();
  await player.start();
  const offs = [session.on("audio", (e) => player.push(e.pcm)), session.on("interrupted", () => player.flush())];
  /** @type {MicCapture|null} */
  let mic = null;
  if (options.mic) {
    mic = new MicCapture((pcm) => session.sendAudio(pcm, 16000), options.capture);
    await mic.start();
  }
  return {
    player,
    mic,
    async stop() {
      for (const off of offs) off();
      await mic?.stop();
      await player.close();
    },
  };
}
