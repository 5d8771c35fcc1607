/**
 * A scripted stream server for transport tests, and the wires that put it behind each
 * transport: HTTP as a `fetch` (start, SSE events, status, stop) and WebSocket as a fake
 * socket class (`start` / `resume` / `stop` messages, `accepted` / `rejected`, JSON event frames).
 *
 * The server holds streams whose events come from a script: a stream produces nothing
 * until the test calls `emit`, so the test decides what every reader has seen when it
 * cuts the connections (`drop`), forgets a stream (`forget`), or stops one. It answers as
 * `quartapp` does: events after the reader's cursor (`Last-Event-ID` over `?after=`), 204
 * to a reader that already has the end, 404 `stream_not_found` over HTTP and a `rejected`
 * frame over a socket, `done` status `stopped` after a stop, the connection ended after the
 * terminal event. `overlap` makes it replay events the reader already had, as a server
 * may; a client must drop them.
 */
import { EventSource as EventSourcePolyfill } from 'eventsource';
import { sse } from '../../test/fakeTransport.ts';
import {
  isTerminal,
  parseEventId,
  type ErrorDetail,
  type StartRequest,
  type StreamCreated,
  type StreamEvent,
  type StreamStatus,
  type WsClientMessage,
} from '../events.ts';
import { FakeSocket } from './fakeSocket.ts';

/** A start the server refuses: the HTTP status and the `{"error": {...}}` detail (a `rejected` frame's over a socket). */
export interface Refusal {
  status: number;
  error: ErrorDetail;
  retryAfterS?: number;
}

/** One connection reading one stream, as the server sees it. */
export interface ServerReader {
  send(event: StreamEvent): void;
  /** The stream ended: the server is done with this reader. */
  end(): void;
  /** The connection is lost. */
  cut(): void;
}

export interface Following {
  /** The stream ended and the reader holds its last event already (SSE answers 204). */
  readonly caughtUp: boolean;
  /** Send what follows the cursor, then the live events (or end, when the stream has ended). */
  start(): void;
}

interface ServedStream {
  readonly id: string;
  readonly script: readonly StreamEvent[];
  readonly generated: StreamEvent[];
  readonly readers: Set<ServerReader>;
  ended: boolean;
}

const NOT_FOUND: ErrorDetail = { code: 'stream_not_found', message: 'no such stream', field: 'stream_id' };

export class ScriptedServer {
  readonly starts: StartRequest[] = [];
  /** Every attempt to read a stream (accepted or not), with the cursor it gave. */
  readonly reads: { streamId: string; after: string | null }[] = [];
  readonly stops: string[] = [];
  /** What the server could not answer (a cursor it never gave out): a test should see none. */
  readonly faults: string[] = [];
  /** How many events before a reader's cursor the server sends again when it resumes. */
  overlap = 0;
  /** When set, starts are refused with it. */
  refusal: Refusal | null = null;
  private readonly streams = new Map<string, ServedStream>();
  private lastStarted: string | null = null;
  private count = 0;

  /** `script`: the events every stream started here produces, in order, as `emit` lets them out. */
  constructor(private readonly script: readonly StreamEvent[]) {}

  /** A stream that exists already (for a resume), `produced` of its script's events out. */
  add(streamId: string, produced = 0, script: readonly StreamEvent[] = this.script): void {
    this.streams.set(streamId, { id: streamId, script, generated: [], readers: new Set(), ended: false });
    this.lastStarted = streamId;
    this.emit(produced, streamId);
  }

  has(streamId: string): boolean {
    return this.streams.has(streamId);
  }

  /** A start request: the new stream's id, or the refusal. */
  start(request: StartRequest): { streamId: string } | { refusal: Refusal } {
    this.starts.push(request);
    if (this.refusal !== null) return { refusal: this.refusal };
    this.count += 1;
    const streamId = `s${this.count}`;
    this.add(streamId);
    return { streamId };
  }

  /** Let the next `count` events of a stream (the last started by default) out to its readers. */
  emit(count = Infinity, streamId: string | null = this.lastStarted): void {
    const stream = streamId === null ? undefined : this.streams.get(streamId);
    if (stream === undefined) throw new Error(`no stream ${streamId ?? ''} to emit on`);
    for (let i = 0; i < count && !stream.ended; i += 1) {
      const next = stream.script[stream.generated.length];
      if (next === undefined) break;
      this.produce(stream, next);
    }
  }

  /** Follow a stream after `after`; null when the server does not have it. */
  follow(streamId: string, after: string | null, reader: ServerReader): Following | null {
    this.reads.push({ streamId, after });
    const stream = this.streams.get(streamId);
    if (stream === undefined) return null;
    return {
      caughtUp: stream.ended && after !== null && after === stream.generated.at(-1)?.id,
      start: () => {
        for (const event of this.replay(stream, after)) reader.send(event);
        if (stream.ended) reader.end();
        else stream.readers.add(reader);
      },
    };
  }

  /** The reader's connection went away (closed by the client, or lost). */
  unfollow(reader: ServerReader): void {
    for (const stream of this.streams.values()) stream.readers.delete(reader);
  }

  /** How many connections read `streamId` now. */
  readers(streamId: string): number {
    return this.streams.get(streamId)?.readers.size ?? 0;
  }

  /** Stop generating: the stream ends with `done` status `stopped` (soon after, as the server's does). False: no such stream. */
  stop(streamId: string): boolean {
    this.stops.push(streamId);
    const stream = this.streams.get(streamId);
    if (stream === undefined) return false;
    queueMicrotask(() => {
      if (stream.ended) return;
      const last = stream.generated.at(-1);
      const position = last ? parseEventId(last.id) : null;
      const text = stream.generated.map((e) => (e.type === 'token' ? e.data.text : '')).join('');
      const tokens = stream.generated.filter((e) => e.type === 'token').length;
      this.produce(stream, {
        id: `${position?.epoch ?? 'epoch'}-${(position?.seq ?? 0) + 1}`,
        type: 'done',
        data: {
          status: 'stopped',
          reason: 'stop_requested',
          usage: { input_tokens: 5, output_tokens: tokens },
          result: { block_type: 'ask_question', text },
        },
      });
    });
    return true;
  }

  /** Every connection is lost at once (the network went away). */
  drop(): void {
    for (const stream of this.streams.values()) {
      const readers = [...stream.readers];
      stream.readers.clear();
      for (const reader of readers) reader.cut();
    }
  }

  /** The server no longer has the stream (expired from its log, or a restart lost it). */
  forget(streamId: string): void {
    const stream = this.streams.get(streamId);
    this.streams.delete(streamId);
    for (const reader of stream?.readers ?? []) reader.cut();
  }

  status(streamId: string): StreamStatus | null {
    const stream = this.streams.get(streamId);
    if (stream === undefined) return null;
    const first = stream.generated[0]?.id ?? '';
    const last = stream.generated.at(-1);
    const end = last && last.type === 'done' ? last.data.status : last && last.type === 'error' ? last.data.status : null;
    return {
      stream_id: streamId,
      block_type: 'ask_question',
      status: end ?? 'running',
      created_at: 0,
      ended_at: end === null ? null : 1,
      first_event_id: first,
      last_event_id: last?.id ?? '',
    };
  }

  private produce(stream: ServedStream, event: StreamEvent): void {
    stream.generated.push(event);
    const terminal = isTerminal(event);
    if (terminal) stream.ended = true;
    const readers = [...stream.readers];
    if (terminal) stream.readers.clear();
    for (const reader of readers) {
      reader.send(event);
      if (terminal) reader.end();
    }
  }

  private replay(stream: ServedStream, after: string | null): StreamEvent[] {
    if (after === null) return stream.generated;
    const index = stream.generated.findIndex((e) => e.id === after);
    if (index < 0) {
      this.faults.push(`${stream.id}: asked to resume after ${after}, an id the server never sent`);
      return stream.generated;
    }
    return stream.generated.slice(Math.max(0, index + 1 - this.overlap));
  }
}

// -- HTTP ------------------------------------------------------------------------------

/** A response body the server writes piece by piece; pushing into an ended body is a no-op. */
export function controlledBody(onCancel: () => void = () => undefined) {
  const encoder = new TextEncoder();
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let open = true;
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
    cancel() {
      open = false;
      onCancel();
    },
  });
  return {
    stream,
    get open() {
      return open;
    },
    push(text: string) {
      if (open) controller.enqueue(encoder.encode(text));
    },
    close() {
      if (!open) return;
      open = false;
      controller.close();
    },
    /** The connection breaks: the client's read fails. */
    error(reason: unknown = new TypeError('network error')) {
      if (!open) return;
      open = false;
      controller.error(reason);
    },
  };
}

function json(body: unknown, status: number, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });
}

function urlOf(input: RequestInfo | URL): URL {
  if (input instanceof URL) return input;
  return new URL(typeof input === 'string' ? input : input.url);
}

export interface HttpWire {
  /** The server's HTTP routes as a `fetch` (for the fetch reader, and the status and stop calls). */
  fetch: typeof fetch;
  /** An EventSource (the `eventsource` polyfill, spec behaviour: Last-Event-ID, `retry:`) that reads through `fetch`. */
  EventSource: typeof EventSource;
  /** Event-stream responses the client is reading now. */
  open(): number;
}

/**
 * The server's HTTP side: `POST /api/streams`, `GET /api/streams/<id>/events` (SSE, after
 * `Last-Event-ID` or `?after=`), `GET /api/streams/<id>`, `POST /api/streams/<id>/stop`.
 */
export function httpWire(server: ScriptedServer, options: { retryMs?: number } = {}): HttpWire {
  const retryMs = options.retryMs ?? 2000;
  const bodies = new Set<ReturnType<typeof controlledBody>>();

  function events(streamId: string, cursor: string | null, signal: AbortSignal | null | undefined): Response {
    const body = controlledBody(() => {
      server.unfollow(reader);
      bodies.delete(body);
    });
    const reader: ServerReader = {
      send: (event) => body.push(sse(event)),
      end: () => {
        body.close();
        bodies.delete(body);
      },
      cut: () => {
        body.error();
        bodies.delete(body);
      },
    };
    const following = server.follow(streamId, cursor, reader);
    if (following === null) return json({ error: NOT_FOUND }, 404);
    if (following.caughtUp) return new Response(null, { status: 204 });
    signal?.addEventListener('abort', () => {
      server.unfollow(reader);
      body.error(new DOMException('the request was aborted', 'AbortError'));
      bodies.delete(body);
    });
    bodies.add(body);
    body.push(`retry: ${retryMs}\n\n: hb\n\n`);
    following.start();
    return new Response(body.stream, {
      status: 200,
      headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache, no-transform' },
    });
  }

  const fetchFn = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const url = urlOf(input);
    const method = (init?.method ?? 'GET').toUpperCase();
    const headers = new Headers(init?.headers);
    const path = url.pathname;
    if (method === 'POST' && path === '/api/streams') {
      const outcome = server.start(JSON.parse(String(init?.body)) as StartRequest);
      if ('refusal' in outcome) {
        const { status, error, retryAfterS } = outcome.refusal;
        return json({ error }, status, retryAfterS === undefined ? {} : { 'retry-after': String(retryAfterS) });
      }
      const id = outcome.streamId;
      const created: StreamCreated = {
        stream_id: id,
        block_type: 'ask_question',
        status: 'running',
        events_url: `/api/streams/${id}/events`,
        status_url: `/api/streams/${id}`,
        stop_url: `/api/streams/${id}/stop`,
        websocket_url: '/ws/streams',
      };
      return json(created, 201);
    }
    const match = /^\/api\/streams\/([^/]+)(\/events|\/stop)?$/.exec(path);
    const streamId = match?.[1] === undefined ? null : decodeURIComponent(match[1]);
    if (streamId !== null && method === 'GET' && match?.[2] === '/events') {
      return events(streamId, headers.get('last-event-id') || url.searchParams.get('after') || null, init?.signal);
    }
    if (streamId !== null && method === 'GET' && match?.[2] === undefined) {
      const status = server.status(streamId);
      return status === null ? json({ error: NOT_FOUND }, 404) : json(status, 200);
    }
    if (streamId !== null && method === 'POST' && match?.[2] === '/stop') {
      if (!server.stop(streamId)) return json({ error: NOT_FOUND }, 404);
      return json(server.status(streamId), 200);
    }
    return json({ error: { code: 'not_found', message: `no route ${method} ${path}`, field: null } }, 404);
  };

  class ServedEventSource extends EventSourcePolyfill {
    constructor(url: string | URL, init?: { withCredentials?: boolean }) {
      super(url, { ...init, fetch: fetchFn });
    }
  }

  return {
    fetch: fetchFn as typeof fetch,
    EventSource: ServedEventSource as unknown as typeof EventSource,
    open: () => bodies.size,
  };
}

// -- WebSocket ---------------------------------------------------------------------------

export interface SocketWire {
  /** The socket class to give the transport: each one opens by itself and is served by `server`. */
  WebSocket: typeof WebSocket;
  sockets: FakeSocket[];
  /** Sockets open now. */
  open(): number;
}

/** The server's `/ws/streams`: it answers `start`, `resume` and `stop` and sends each followed stream's events. */
export function socketWire(server: ScriptedServer): SocketWire {
  const sockets: FakeSocket[] = [];
  const readersOf = new Map<FakeSocket, Set<ServerReader>>();

  function release(socket: FakeSocket): void {
    for (const reader of readersOf.get(socket) ?? []) server.unfollow(reader);
    readersOf.delete(socket);
  }

  function readerFor(socket: FakeSocket, streamId: string): ServerReader {
    const reader: ServerReader = {
      send: (event) => socket.event(streamId, event),
      end: () => readersOf.get(socket)?.delete(reader),
      cut: () => socket.drop(),
    };
    const readers = readersOf.get(socket) ?? new Set();
    readers.add(reader);
    readersOf.set(socket, readers);
    return reader;
  }

  function handle(socket: FakeSocket, message: WsClientMessage): void {
    if (socket.readyState !== FakeSocket.OPEN) return;
    const requestId = message.request_id ?? null;
    if (message.type === 'start') {
      const request: StartRequest = {
        block_type: message.block_type as StartRequest['block_type'],
        input: message.input ?? '',
        ...(message.options ? { options: message.options } : {}),
        ...(message.parent_stream_id ? { parent_stream_id: message.parent_stream_id, follow_up: (message.follow_up ?? null) as StartRequest['follow_up'] } : {}),
      };
      const outcome = server.start(request);
      if ('refusal' in outcome) {
        socket.receive({ type: 'rejected', request_id: requestId, stream_id: null, error: outcome.refusal.error });
        return;
      }
      const following = server.follow(outcome.streamId, null, readerFor(socket, outcome.streamId));
      socket.receive({ type: 'accepted', request_id: requestId, stream_id: outcome.streamId, action: 'start' });
      following?.start();
      return;
    }
    if (message.type === 'resume') {
      const following = server.follow(message.stream_id, message.after ?? null, readerFor(socket, message.stream_id));
      if (following === null) {
        socket.receive({ type: 'rejected', request_id: requestId, stream_id: message.stream_id, error: NOT_FOUND });
        return;
      }
      // as quartapp/blueprints/ws.py: an ended stream read to its end is `caught_up`, and nothing follows
      const caughtUp = following.caughtUp;
      socket.receive({ type: 'accepted', request_id: requestId, stream_id: message.stream_id, action: 'resume', caught_up: caughtUp });
      if (!caughtUp) following.start();
      return;
    }
    if (!server.stop(message.stream_id)) {
      socket.receive({ type: 'rejected', request_id: requestId, stream_id: message.stream_id, error: NOT_FOUND });
      return;
    }
    socket.receive({ type: 'accepted', request_id: requestId, stream_id: message.stream_id, action: 'stop' });
  }

  class ServedSocket extends FakeSocket {
    constructor(url: string) {
      super(url);
      sockets.push(this);
      // a socket opens a moment after it is made, as a real one does
      queueMicrotask(() => {
        if (this.readyState === FakeSocket.CONNECTING) this.open();
      });
    }
    override send(text: string): void {
      super.send(text);
      const message = this.sent.at(-1) as WsClientMessage;
      queueMicrotask(() => handle(this, message)); // the server answers after the client's send returns
    }
    override close(code = 1000): void {
      super.close(code);
      release(this);
    }
    override drop(code = 1006): void {
      super.drop(code);
      release(this);
    }
  }

  return {
    WebSocket: ServedSocket as unknown as typeof WebSocket,
    sockets,
    open: () => sockets.filter((s) => s.readyState === FakeSocket.OPEN).length,
  };
}
