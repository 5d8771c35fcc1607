/**
 * The stream's wire model: one typed event model for SSE and WebSocket.
 *
 * Hand-written from contracts/stream-schema.yaml (generated from the server's
 * pydantic models). `events.contract.test.ts` loads that YAML and fails when a
 * type, field or enum here drifts from it; `contractFields.ts` holds the
 * runtime field lists that test compares, and checks them against these types
 * at compile time.
 */

export const BLOCK_TYPES = ['ask_question', 'explain_eli10', 'quiz', 'diagram'] as const;
export type BlockType = (typeof BLOCK_TYPES)[number];

export const END_STATUSES = ['complete', 'stopped', 'interrupted', 'failed'] as const;
export type EndStatus = (typeof END_STATUSES)[number];

export const RESET_REASONS = ['epoch_mismatch', 'history_trimmed', 'unknown_cursor'] as const;
export type ResetReason = (typeof RESET_REASONS)[number];

export interface Usage {
  input_tokens: number;
  output_tokens: number;
}

/**
 * A quiz question as the learner gets it. The answer and the explanation stay on the server
 * until the learner answers (`StreamTransport.answer`); they are here only for a requester that
 * asked for the answer key (`options.answer_key`, a teacher's view).
 */
export interface QuizItem {
  question: string;
  /** Always four. */
  choices: string[];
  answer_index?: number | null;
  explanation?: string | null;
}

/** @deprecated the old name of {@link QuizItem}. */
export type QuizQuestion = QuizItem;

/** The server's verdict on one answer: `POST /api/streams/<id>/answer`. */
export interface QuizAnswer {
  index: number;
  choice: number;
  correct: boolean;
  answer_index: number;
  explanation: string;
}

export interface DiagramCheck {
  valid: boolean;
  errors: string[];
}

export interface BlockResult {
  block_type: BlockType;
  /** Markdown answer, raw quiz JSON, or Mermaid source. */
  text: string;
  questions?: QuizItem[] | null;
  diagram?: DiagramCheck | null;
}

export interface StartData {
  stream_id: string;
  block_type: BlockType;
  provider: string;
  model: string;
  scripted: boolean;
  notice?: string | null;
  /** The learner's text (a follow-up's: the thread's topic). */
  input?: string | null;
  /** A follow-up: the stream of the turn it continues. */
  parent_stream_id?: string | null;
  /** A follow-up's kind (`simpler`, `another_question`, ...); null: the learner's own words. */
  follow_up?: string | null;
  /** True when this stream reads a generation shared with other identical requests. */
  shared?: boolean;
  /** True when that generation had completed: the stream replays it at once. */
  cached?: boolean;
}

export interface QueuedData {
  position: number;
}

export interface TokenData {
  text: string;
  tokens: number;
  t?: number | null;
}

export interface QuizQuestionData {
  index: number;
  question: QuizItem;
}

export interface DiagramPartialData {
  text: string;
}

export interface SnapshotData {
  start: StartData | null;
  text: string;
  questions: QuizItem[];
  output_tokens: number;
}

export interface ResetData {
  reason: ResetReason;
  message: string;
}

export interface DoneData {
  status: EndStatus;
  reason: string;
  usage: Usage;
  result: BlockResult;
}

export interface ErrorData {
  code: string;
  message: string;
  status: EndStatus;
  retryable: boolean;
  usage?: Usage | null;
  result?: BlockResult | null;
}

export interface ShutdownData {
  message: string;
  retry_after_ms: number;
}

/** Event type → its `data`. */
export interface EventDataMap {
  start: StartData;
  queued: QueuedData;
  token: TokenData;
  'quiz.question': QuizQuestionData;
  'diagram.partial': DiagramPartialData;
  snapshot: SnapshotData;
  reset: ResetData;
  done: DoneData;
  error: ErrorData;
  shutdown: ShutdownData;
}

export const EVENT_TYPES = [
  'start',
  'queued',
  'token',
  'quiz.question',
  'diagram.partial',
  'snapshot',
  'reset',
  'done',
  'error',
  'shutdown',
] as const satisfies readonly (keyof EventDataMap)[];
export type EventType = (typeof EVENT_TYPES)[number];

/** The envelope: `id` is `<epoch>-<seq>`; WebSocket frames also carry `stream_id`. */
export type StreamEventOf<T extends EventType> = {
  id: string;
  type: T;
  data: EventDataMap[T];
  stream_id?: string;
};

export type StreamEvent = { [T in EventType]: StreamEventOf<T> }[EventType];
export type TerminalEvent = StreamEventOf<'done'> | StreamEventOf<'error'>;

export function isEventType(value: unknown): value is EventType {
  return typeof value === 'string' && (EVENT_TYPES as readonly string[]).includes(value);
}

export function isTerminal(event: StreamEvent): event is TerminalEvent {
  return event.type === 'done' || event.type === 'error';
}

/** snapshot and reset replace state: apply them even when their id was seen. */
export function replacesState(event: StreamEvent): boolean {
  return event.type === 'snapshot' || event.type === 'reset';
}

// -- requests and replies ----------------------------------------------------

export interface BlockOptions {
  max_tokens?: number | null;
  num_questions?: number | null;
  /** Quiz only: the answers with the questions (a teacher's view; the server decides who may). */
  answer_key?: boolean;
}

/** A follow-up's kind: what the learner asks of a finished turn. */
export type FollowUpKind = 'simpler' | 'another_example' | 'why' | 'another_question' | 'more_detail';

export interface StartRequest {
  block_type: BlockType;
  /** The question or topic; a follow-up of a kind may leave it empty (the thread's topic is used). */
  input: string;
  options?: BlockOptions;
  /** A follow-up: the finished stream whose thread it continues. */
  parent_stream_id?: string | null;
  follow_up?: FollowUpKind | null;
}

/** The JSON a start sends (POST /api/streams, or a socket's `start` with `type` and `request_id`). */
export function startBody(request: StartRequest): Omit<StartRequest, 'options'> & { options: BlockOptions } {
  const body: Omit<StartRequest, 'options'> & { options: BlockOptions } = {
    block_type: request.block_type,
    input: request.input,
    options: request.options ?? {},
  };
  if (request.parent_stream_id) {
    body.parent_stream_id = request.parent_stream_id;
    body.follow_up = request.follow_up ?? null;
  }
  return body;
}

/** 201 answer of POST /api/streams. */
export interface StreamCreated {
  stream_id: string;
  block_type: string;
  status: string;
  events_url: string | null;
  status_url: string;
  stop_url: string;
  websocket_url: string | null;
}

export interface StreamStatus {
  stream_id: string;
  block_type: string;
  status: 'running' | EndStatus;
  created_at: number;
  ended_at: number | null;
  first_event_id: string;
  last_event_id: string;
}

/** The one 4xx body shape: `{"error": {...}}`; also a WebSocket `rejected` detail. */
export interface ErrorDetail {
  code: string;
  message: string;
  field?: string | null;
}

export interface WsStart {
  type: 'start';
  block_type: string;
  input?: string;
  options?: BlockOptions;
  request_id?: string | null;
  parent_stream_id?: string | null;
  follow_up?: string | null;
}

export interface WsResume {
  type: 'resume';
  stream_id: string;
  after?: string | null;
  request_id?: string | null;
}

export interface WsStop {
  type: 'stop';
  stream_id: string;
  request_id?: string | null;
}

export type WsClientMessage = WsStart | WsResume | WsStop;

export interface WsAccepted {
  type: 'accepted';
  request_id: string | null;
  stream_id: string;
  action: 'start' | 'resume' | 'stop';
  /** A resume of an ended stream whose last event we hold: nothing follows (SSE's 204). */
  caught_up?: boolean;
}

export interface WsRejected {
  type: 'rejected';
  request_id: string | null;
  stream_id: string | null;
  error: ErrorDetail;
}

// -- parsing -------------------------------------------------------------------

/** `<epoch>-<seq>`, or null when the id is not one of the server's. */
export function parseEventId(id: string): { epoch: string; seq: number } | null {
  const dash = id.lastIndexOf('-');
  if (dash <= 0 || dash === id.length - 1) return null;
  const seqText = id.slice(dash + 1);
  if (!/^[0-9]+$/.test(seqText)) return null;
  return { epoch: id.slice(0, dash), seq: Number(seqText) };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const isString = (v: unknown): v is string => typeof v === 'string';
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;

function isQuestion(v: unknown): v is QuizItem {
  return (
    isRecord(v) &&
    isString(v.question) &&
    Array.isArray(v.choices) &&
    v.choices.every(isString) &&
    (v.answer_index == null || isCount(v.answer_index)) &&
    (v.explanation == null || isString(v.explanation))
  );
}

/** The fields the page folds have the right shape (the server's own events always do). */
function wellFormed(type: EventType, data: Record<string, unknown>): boolean {
  switch (type) {
    case 'token':
      return isString(data.text) && isCount(data.tokens);
    case 'diagram.partial':
      return isString(data.text);
    case 'quiz.question':
      return isCount(data.index) && isQuestion(data.question);
    case 'snapshot':
      return isString(data.text) && Array.isArray(data.questions) && data.questions.every(isQuestion) && isCount(data.output_tokens);
    case 'done':
      return isString(data.status) && isRecord(data.usage) && isRecord(data.result) && isString(data.result.text);
    case 'error':
      return isString(data.code) && isString(data.message) && isString(data.status);
    case 'start':
      return isString(data.block_type);
    default:
      return true;
  }
}

/**
 * Build an event from a wire envelope (WebSocket) or SSE fields.
 * Returns null for anything that is not a known event with an object payload;
 * the server never sends one, and a client must not crash on it.
 */
export function toStreamEvent(
  type: unknown,
  id: unknown,
  data: unknown,
  streamId?: unknown,
): StreamEvent | null {
  if (!isEventType(type) || !isRecord(data) || !wellFormed(type, data)) return null;
  // A reset names no position: the server sends it without an id ('' here); every other event has one.
  if (typeof id !== 'string' && !(type === 'reset' && id === undefined)) return null;
  const event = { id: typeof id === 'string' ? id : '', type, data } as unknown as StreamEvent;
  if (typeof streamId === 'string') event.stream_id = streamId;
  return event;
}

/** Parse one SSE message (`event:` name, `id:`, `data:` JSON text). */
export function parseSSEMessage(event: string | undefined, id: string | undefined, data: string): StreamEvent | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    return null;
  }
  return toStreamEvent(event, id, parsed);
}
