/**
 * The transport seam: what the hooks call, whatever carries the bytes.
 *
 * A transport starts a stream, resumes one from a cursor, and stops one. Both
 * implementations (SSE in `sseTransport.ts`, WebSocket in `wsTransport.ts`)
 * deliver the same `StreamEvent`s through the same handlers, de-duplicated by
 * id with `EventCursor`, and reconnect with `backoffDelay`. Hooks hold no I/O:
 * they get a transport injected (props or context) and only fold events.
 */
import {
  isTerminal,
  parseEventId,
  replacesState,
  type ErrorDetail,
  type QuizAnswer,
  type StartRequest,
  type StreamEvent,
  type TerminalEvent,
} from './events.ts';

export type TransportKind = 'sse' | 'sse-fetch' | 'websocket';

/** The connection under a stream, for a status line; the stream's own state comes from events. */
export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface StreamFailure {
  /** `stream` — a terminal `error` event; `transport` — the connection could not be (re)made; `request` — the server refused. */
  source: 'stream' | 'transport' | 'request';
  code: string;
  message: string;
  /** True when trying again (resume or restart) may work. */
  retryable: boolean;
  /** HTTP status of a refused request, when there was one. */
  httpStatus?: number;
  field?: string | null;
}

export interface StreamHandlers {
  /** Every new event, in order, once (snapshot and reset even when their id was seen). */
  onEvent?(event: StreamEvent): void;
  /** Text appended by a `token` or `diagram.partial` event. */
  onChunk?(text: string, event: StreamEvent): void;
  /** A terminal `error` event, or a connection that could not be made or remade. */
  onError?(failure: StreamFailure): void;
  /** The terminal event (`done` or `error`); the connection is closed by then. */
  onComplete?(event: TerminalEvent): void;
  onConnection?(state: ConnectionState): void;
}

export interface StreamHandle {
  readonly streamId: string;
  /** The last event id delivered: the cursor to resume from. */
  readonly lastEventId: string | null;
  /** True once the terminal event arrived, the handle was closed, or reading failed for good. */
  readonly closed: boolean;
  /** Ask the server to stop generating. The stream then ends with `done` status `stopped`, which is delivered. */
  stop(): Promise<void>;
  /** Stop reading here: close the connection, cancel timers, no more callbacks. Generation goes on. */
  close(): void;
}

export interface StreamTransport {
  readonly kind: TransportKind;
  /** Start generation and read the stream. Rejects with `StreamRequestError` when the server refuses. */
  start(request: StartRequest, handlers: StreamHandlers): Promise<StreamHandle>;
  /** Read an existing stream after `afterId` (null: from the start, or a snapshot of a long one). */
  resume(streamId: string, afterId: string | null, handlers: StreamHandlers): StreamHandle;
  /** Ask the server to stop a stream, read by whoever. */
  stop(streamId: string): Promise<void>;
  /** Answer question `index` of a quiz stream: whether `choice` was right, the answer and why (once per question). */
  answer(streamId: string, index: number, choice: number): Promise<QuizAnswer>;
  /** Release shared resources (a shared socket); handles still open are closed. */
  dispose?(): void;
}

export class StreamRequestError extends Error {
  readonly failure: StreamFailure;
  constructor(failure: StreamFailure) {
    super(failure.message);
    this.name = 'StreamRequestError';
    this.failure = failure;
  }
}

export function failureOf(error: unknown): StreamFailure {
  if (error instanceof StreamRequestError) return error.failure;
  const message = error instanceof Error ? error.message : String(error);
  return { source: 'transport', code: 'network_error', message, retryable: true };
}

/** The failure a refused HTTP request reports: the server's `{"error": {...}}` when it sent one. */
export async function failureFromResponse(response: Response): Promise<StreamFailure> {
  let detail: ErrorDetail | null = null;
  try {
    const body: unknown = await response.json();
    if (typeof body === 'object' && body !== null && 'error' in body) {
      const error = (body as { error: unknown }).error;
      if (typeof error === 'object' && error !== null && 'code' in error && 'message' in error) {
        detail = error as ErrorDetail;
      }
    }
  } catch {
    // not JSON: keep the status line
  }
  return {
    source: 'request',
    code: detail?.code ?? `http_${response.status}`,
    message: detail?.message ?? `the server answered ${response.status} ${response.statusText}`.trim(),
    retryable: response.status >= 500 || response.status === 429 || response.status === 408,
    httpStatus: response.status,
    field: detail?.field ?? null,
  };
}

// -- cursor and de-duplication -----------------------------------------------------

/**
 * The resume cursor of one stream, and its duplicate filter.
 *
 * Ids are `<epoch>-<seq>` with seq rising by one per event, so "seen" is
 * "same epoch and seq not above the last one". `snapshot` and `reset` carry the
 * id of the last event they cover and always pass: they replace state. Only the
 * snapshot moves the cursor: a connection cut between a reset and its snapshot
 * resumes from the old cursor and gets both again, instead of skipping the state.
 */
export class EventCursor {
  private last: string | null;
  private epoch: string | null = null;
  private seq = -1;
  private readonly unparsed = new Set<string>();

  constructor(initial: string | null = null) {
    this.last = initial;
    if (initial) this.moveTo(initial);
  }

  get lastEventId(): string | null {
    return this.last;
  }

  /** True when the event is new (and moves the cursor); false for a duplicate. */
  accept(event: StreamEvent): boolean {
    if (replacesState(event)) {
      if (event.type !== 'reset') this.moveTo(event.id);
      return true;
    }
    const parsed = parseEventId(event.id);
    if (parsed === null) {
      if (this.unparsed.has(event.id)) return false;
      this.unparsed.add(event.id);
      this.last = event.id;
      return true;
    }
    if (parsed.epoch === this.epoch && parsed.seq <= this.seq) return false;
    this.moveTo(event.id);
    return true;
  }

  private moveTo(id: string): void {
    this.last = id;
    const parsed = parseEventId(id);
    if (parsed) {
      this.epoch = parsed.epoch;
      this.seq = parsed.seq;
    }
  }
}

// -- reconnect policy ----------------------------------------------------------------

export interface BackoffOptions {
  /** First delay before jitter, ms. */
  initialMs: number;
  /** Cap of the delay, ms. */
  maxMs: number;
  factor: number;
  /** Consecutive failed attempts before giving up. */
  maxRetries: number;
  /** Source of jitter (tests pass a fixed one). */
  random: () => number;
}

export const DEFAULT_BACKOFF: BackoffOptions = {
  initialMs: 500,
  maxMs: 10_000,
  factor: 2,
  maxRetries: 8,
  random: Math.random,
};

/** Exponential backoff with "equal jitter": half the step fixed, half random, so clients spread out. */
export function backoffDelay(attempt: number, options: BackoffOptions = DEFAULT_BACKOFF): number {
  const step = Math.min(options.maxMs, options.initialMs * options.factor ** Math.max(0, attempt));
  return Math.round(step / 2 + options.random() * (step / 2));
}

// -- the delivery shared by both transports --------------------------------------------

/**
 * Feeds events into handlers once each, closes on the terminal event, and keeps
 * callbacks from running after close. Each transport's reader owns one.
 */
export class Delivery {
  readonly cursor: EventCursor;
  private done = false;
  constructor(
    private readonly handlers: StreamHandlers,
    afterId: string | null,
    private readonly onFinish: () => void,
  ) {
    this.cursor = new EventCursor(afterId);
  }

  get closed(): boolean {
    return this.done;
  }

  deliver(event: StreamEvent): void {
    if (this.done || !this.cursor.accept(event)) return;
    this.handlers.onEvent?.(event);
    if (event.type === 'token' || event.type === 'diagram.partial') this.handlers.onChunk?.(event.data.text, event);
    if (isTerminal(event)) {
      if (event.type === 'error') {
        const { code, message, retryable } = event.data;
        this.handlers.onError?.({ source: 'stream', code, message, retryable });
      }
      this.finish(true);
      this.handlers.onComplete?.(event);
    }
  }

  connection(state: ConnectionState): void {
    if (!this.done) this.handlers.onConnection?.(state);
  }

  fail(failure: StreamFailure): void {
    if (this.done) return;
    this.finish(true);
    this.handlers.onError?.(failure);
  }

  /** End delivery and release the connection; `notify` false when the owner asked (no more callbacks). */
  finish(notify = false): void {
    if (this.done) return;
    this.done = true;
    this.onFinish();
    if (notify) this.handlers.onConnection?.('closed');
  }
}

let counter = 0;
export function requestId(): string {
  counter += 1;
  return `r${Date.now().toString(36)}${counter.toString(36)}`;
}
