// tunnelproof browser client: the turn tracker (no I/O). A port of
// tunnelproof/session/turns.py: which server turn answers which client message (FIFO).
//
// The model of the conversation (client contract 3):
//   * every send has a sequence number; a send that asks for an answer (user text, a
//     clientContent with turnComplete, a tool response, the end of an utterance) is a
//     *question*;
//   * the server answers questions in the order it reads them, one turn each (FIFO). The
//     first output of a new turn answers the oldest unanswered question, so that question
//     and every send before it are *read* (TCP keeps order). Output that continues a turn
//     answers nothing new: a follow-up asked while an answer is still arriving is answered
//     by the *next* turn, and a resumable handle that comes with the current one does not
//     hold it;
//   * a turn cut by `interrupted` before any output still consumed its question.
// Audio has no question of its own: a turn that starts with no question pending counts
// everything sent before it as read (the best the wire allows without
// lastConsumedClientMessageIndex, which only Vertex has). Until such a turn, audio is
// *unheard*: an unfinished utterance is not part of the server's state, so a handle issued
// meanwhile does not hold it (TurnTracker.unheldFrom).

/**
 * What a lost connection cut: the question being answered and those still waiting.
 * @typedef {{cut: number|null, waiting: number[], owed: boolean}} LostTurn
 */

/** The model turn, the questions owed an answer, and what the server has read. */
export class TurnTracker {
  constructor() {
    /** A model turn is in progress (until turnComplete or interrupted). */
    this.generating = false;
    /** Model output is flowing (until generationComplete). */
    this.streaming = false;
    /** The server said interactionStatus IN_PROGRESS and not yet IDLE. */
    this.interactionInProgress = false;
    /** Sends not yet known to be read by the server, oldest first. @type {Array<[number, boolean]>} */
    this.unread = [];
    /**
     * How many of `unread` are questions: replyDue is asked on every frame, and `unread`
     * would grow by one per 20 ms audio chunk through a long answer.
     */
    this.questions = 0;
    /** The oldest audio chunk no turn has consumed (kept even when `unread` skips it). @type {number|null} */
    this.unheardAudio = null;
    /** The question the current turn answers. @type {number|null} */
    this.answeringSeq = null;
    /** A server turn started and its turnComplete has not come. */
    this.inTurn = false;
    /** The turn in progress was cut short by `interrupted` (until its turnComplete). */
    this.cut = false;
  }

  /** A question was sent and its answer has not started yet. */
  get replyDue() {
    return this.questions > 0;
  }

  /**
   * Something is owed by the server: a reply, or the rest of flowing output. While true,
   * any server message proves the link alive, and silence is suspicious (never proof).
   */
  get owed() {
    return this.replyDue || this.streaming;
  }

  /** Not at a turn boundary: a turn runs or a reply is due. */
  get busy() {
    return this.generating || this.replyDue;
  }

  /**
   * Sends a handle issued now cannot hold: the oldest unanswered question and all after it
   * (a handle comes with the turn answering an earlier question).
   * @returns {number[]}
   */
  get awaitingAnswer() {
    if (!this.questions) return [];
    const index = this.unread.findIndex(([, question]) => question);
    return index < 0 ? [] : this.unread.slice(index).map(([seq]) => seq);
  }

  /**
   * The oldest send a resumable handle arriving now does not hold (it and every later
   * send): the oldest unanswered question, or the oldest audio no turn has consumed.
   * @returns {number|null}
   */
  get unheldFrom() {
    const first = this.questions ? this.awaitingAnswer.slice(0, 1) : [];
    const found = [...first, this.unheardAudio].filter((seq) => seq !== null);
    return found.length ? Math.min(...found) : null;
  }

  /** The question the turn in progress answers (until it completes). */
  get answering() {
    return this.answeringSeq;
  }

  /**
   * Message `seq` went out on the live connection (`audio`: a chunk of speech).
   * @param {number} seq @param {boolean} expectsReply @param {boolean} [audio]
   */
  sent(seq, expectsReply, audio = false) {
    if (audio && this.unheardAudio === null) this.unheardAudio = seq;
    if (expectsReply) {
      this.questions += 1;
    } else if (!this.questions) {
      // With no question before it, a send is read by the next turn's start and is never
      // among awaitingAnswer: nothing asks about it, so it is not kept (audio streams 50
      // chunks a second through a long answer).
      return;
    }
    this.unread.push([seq, expectsReply]);
  }

  /** Model text, audio or transcription arrived. */
  outputArrived() {
    if (!this.inTurn) this.turnStarted();
    this.generating = true;
    this.streaming = true;
  }

  /**
   * The model asked for a tool: that answers a question, and the model now waits for the
   * app (its tool response is the next question, answered by a new turn). Returns the
   * question the call answers (null if unknown).
   * @returns {number|null}
   */
  toolCallArrived() {
    if (!this.inTurn) this.turnStarted();
    const question = this.answeringSeq;
    this.endTurn();
    return question;
  }

  /** generationComplete: output stops; the server may wait for playback. */
  generationCompleted() {
    this.streaming = false;
  }

  /** interrupted: the server read something that cut the turn short (turnComplete follows). */
  interrupted() {
    this.cut = true;
    if (!this.inTurn) this.turnStarted(); // a turn cut before any output still read its question
    this.generating = false;
    this.streaming = false;
  }

  /** turnComplete: the turn is over. */
  turnCompleted() {
    this.endTurn();
  }

  /** interactionStatus: background work goes on (IN_PROGRESS) or is over. @param {string} status */
  interactionReported(status) {
    this.interactionInProgress = status === "IN_PROGRESS";
  }

  /** The connection is gone: what was cut, and what was still waiting. @returns {LostTurn} */
  connectionLost() {
    const lost = {
      cut: this.generating ? this.answeringSeq : null,
      waiting: this.unread.filter(([, question]) => question).map(([seq]) => seq),
      owed: this.busy,
    };
    this.endTurn();
    this.interactionInProgress = false;
    this.unread = [];
    this.questions = 0;
    this.unheardAudio = null; // what it covered is replayed (or reported) anew
    return lost;
  }

  /** A new turn: it answers the oldest unanswered question (FIFO). */
  turnStarted() {
    this.inTurn = true;
    this.answeringSeq = null;
    while (this.unread.length) {
      const [seq, question] = /** @type {[number, boolean]} */ (this.unread.shift());
      if (question) {
        this.questions -= 1;
        this.answeringSeq = seq;
        break;
      }
    }
    // Everything sent before the question it answers was read (with no question pending,
    // everything sent); audio sent after that question is still unheard.
    const laterAudio = this.unheardAudio !== null && this.unread.length > 0;
    this.unheardAudio = laterAudio ? this.unread[0][0] : null;
  }

  endTurn() {
    this.cut = false;
    this.inTurn = false;
    this.generating = false;
    this.streaming = false;
    this.answeringSeq = null;
  }
}
