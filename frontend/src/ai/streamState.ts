/**
 * The fold of a stream's events into what the page shows. Pure: no I/O, no React.
 *
 * `reduce` applies a batch (one animation frame's worth, a replayed backlog,
 * or a snapshot) and returns one new state, so a batch is one React commit.
 */
import type {
  BlockResult,
  BlockType,
  DiagramCheck,
  EndStatus,
  QuizQuestion,
  StartData,
  StreamEvent,
  Usage,
} from './events.ts';
import type { ConnectionState, StreamFailure } from './transport.ts';

export type StreamStatus = 'idle' | 'connecting' | 'streaming' | 'done' | 'error';

export interface AIStreamState {
  status: StreamStatus;
  streamId: string | null;
  /** The id of the last event applied. */
  lastEventId: string | null;
  blockType: BlockType | null;
  /** Accumulated answer: Markdown, or Mermaid source for a diagram. */
  text: string;
  questions: QuizQuestion[];
  /** Every event applied, oldest first (the latest `MAX_EVENTS`). */
  events: StreamEvent[];
  outputTokens: number;
  usage: Usage | null;
  meta: StartData | null;
  /** Place in the model's queue while waiting; null once generating. */
  queuePosition: number | null;
  /** A notice from the server: reset, shutdown. */
  notice: string | null;
  /** How the stream ended, when it has. */
  outcome: EndStatus | null;
  reason: string | null;
  result: BlockResult | null;
  diagram: DiagramCheck | null;
  error: StreamFailure | null;
  connection: ConnectionState;
}

export const MAX_EVENTS = 2000;

export const initialStreamState: AIStreamState = {
  status: 'idle',
  streamId: null,
  lastEventId: null,
  blockType: null,
  text: '',
  questions: [],
  events: [],
  outputTokens: 0,
  usage: null,
  meta: null,
  queuePosition: null,
  notice: null,
  outcome: null,
  reason: null,
  result: null,
  diagram: null,
  error: null,
  connection: 'closed',
};

export type StreamAction =
  | { kind: 'event'; event: StreamEvent }
  | { kind: 'failure'; failure: StreamFailure }
  | { kind: 'connection'; state: ConnectionState }
  /** The transport answered the start: the stream has an id. */
  | { kind: 'attached'; streamId: string }
  /** Reading again after a lost connection; the text so far stays. */
  | { kind: 'resuming' };

/** Apply one event to `next`, a copy that `reduce` owns for the batch. */
function applyEvent(next: AIStreamState, event: StreamEvent): void {
  if (event.type !== 'reset') next.lastEventId = event.id; // the snapshot after it moves the cursor
  if (next.status === 'connecting' || next.status === 'idle') next.status = 'streaming';
  switch (event.type) {
    case 'start':
      next.meta = event.data;
      next.blockType = event.data.block_type;
      next.streamId ??= event.data.stream_id;
      break;
    case 'queued':
      next.queuePosition = event.data.position;
      break;
    case 'token':
      next.queuePosition = null;
      next.text += event.data.text;
      next.outputTokens += event.data.tokens;
      break;
    case 'diagram.partial':
      next.queuePosition = null;
      next.text += event.data.text;
      next.outputTokens += 1;
      break;
    case 'quiz.question': {
      next.queuePosition = null;
      const questions = next.questions.slice();
      questions[event.data.index] = event.data.question;
      next.questions = questions;
      break;
    }
    case 'reset':
      next.text = '';
      next.questions = [];
      next.outputTokens = 0;
      next.notice = event.data.message;
      break;
    case 'snapshot':
      next.text = event.data.text;
      next.questions = event.data.questions.slice();
      next.outputTokens = event.data.output_tokens;
      if (event.data.start) {
        next.meta = event.data.start;
        next.blockType = event.data.start.block_type;
      }
      break;
    case 'shutdown':
      next.notice = event.data.message;
      break;
    case 'done':
      next.status = 'done';
      next.outcome = event.data.status;
      next.reason = event.data.reason;
      next.usage = event.data.usage;
      next.outputTokens = Math.max(next.outputTokens, event.data.usage.output_tokens);
      adoptResult(next, event.data.result);
      next.queuePosition = null;
      break;
    case 'error':
      next.status = 'error';
      next.outcome = event.data.status;
      next.reason = event.data.code;
      next.usage = event.data.usage ?? null;
      if (event.data.result) adoptResult(next, event.data.result);
      next.error = { source: 'stream', code: event.data.code, message: event.data.message, retryable: event.data.retryable };
      next.queuePosition = null;
      break;
  }
  next.events.push(event);
}

/** The final result fills what streaming did not (a non-streaming answer, questions); streamed text stays as received. */
function adoptResult(state: AIStreamState, result: BlockResult): void {
  state.result = result;
  state.diagram = result.diagram ?? null;
  if (result.questions && result.questions.length >= state.questions.length) state.questions = result.questions.slice();
  if (state.text === '' && result.block_type !== 'quiz') state.text = result.text;
}

function applyAction(next: AIStreamState, action: StreamAction): void {
  switch (action.kind) {
    case 'event':
      applyEvent(next, action.event);
      break;
    case 'failure':
      // a terminal `error` event carries its own failure; this is the connection's
      if (action.failure.source !== 'stream') {
        next.status = 'error';
        next.error = action.failure;
      }
      break;
    case 'connection':
      next.connection = action.state;
      break;
    case 'attached':
      next.streamId = action.streamId;
      break;
    case 'resuming':
      next.status = 'streaming';
      next.error = null;
      next.connection = 'connecting';
      break;
  }
}

/** Apply a batch of actions: one new state for the lot. */
export function reduce(state: AIStreamState, actions: readonly StreamAction[]): AIStreamState {
  if (actions.length === 0) return state;
  const next: AIStreamState = { ...state, events: state.events.slice() };
  for (const action of actions) applyAction(next, action);
  if (next.events.length > MAX_EVENTS) next.events = next.events.slice(-MAX_EVENTS);
  return next;
}
