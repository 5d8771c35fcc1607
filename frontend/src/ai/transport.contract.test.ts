/**
 * The transport contract: what the hooks rely on of any `StreamTransport`, run over every
 * implementation (`sse` — EventSource, `sse-fetch` — fetch + eventsource-parser,
 * `websocket`).
 *
 * Each case drives one scripted stream (ids `<epoch>-<seq>`, as the server sends them)
 * through `ScriptedServer` (testing/streamServer.ts); a small wire per transport puts that
 * server behind it: HTTP as a `fetch` serving SSE frames (read by the fetch reader, and by
 * the `eventsource` polyfill for the EventSource reader), WebSocket as a fake socket class
 * that answers `start` / `resume` / `stop` with `accepted` / `rejected` and JSON event frames.
 * Timers are fake: reconnect backoff and the EventSource `retry:` delay pass when the test
 * advances the clock, and "no retry" means none however long the clock runs.
 *
 * What a transport's own wire does (chunked frames, Last-Event-ID vs `?after=`, the shared
 * socket) stays in sseTransport.test.ts and wsTransport.test.ts. So do the details the wires
 * give differently and the hooks do not read: a refused start's `httpStatus` and `retryable`
 * (HTTP has the status; a `rejected` frame has none and says not retryable), the message of
 * `stream_not_found` (the EventSource reader writes its own after a status check).
 *
 * Resuming an ended stream after its last id (a host's own client may; the hooks resume only
 * a handle that is not closed) closes quietly on every transport: the server answers 204 over
 * SSE and `accepted` with `caught_up` over the socket. (It used to differ: the EventSource
 * reader retried the 204 until it gave up with `connection_lost`, and the socket waited for an
 * event that never came.)
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { doneEvent, id, startEvent, token } from '../test/fakeTransport.ts';
import type { StreamEvent } from './events.ts';
import { createSSETransport } from './sseTransport.ts';
import { collect } from './testing/collect.ts';
import { FakeSocket } from './testing/fakeSocket.ts';
import { ScriptedServer, httpWire, socketWire } from './testing/streamServer.ts';
import { StreamRequestError, type BackoffOptions, type StreamTransport, type TransportKind } from './transport.ts';
import { createWebSocketTransport } from './wsTransport.ts';

const BASE = 'http://localhost';

/** The stream every case reads: a start, one token per word, and the done that holds the whole text. */
const WORDS = ['Light', ' bends', ' as', ' it', ' enters', ' water.'];
const FULL_TEXT = WORDS.join('');
const SCRIPT: StreamEvent[] = [startEvent(1), ...WORDS.map((word, i) => token(i + 2, word)), doneEvent(WORDS.length + 2, FULL_TEXT)];
const LAST_ID = id(SCRIPT.length);

/** The same stream failing after two words: a terminal `error` event, retryable (a reconnect must still not follow). */
const FAILING: StreamEvent[] = [
  ...SCRIPT.slice(0, 3),
  { id: id(4), type: 'error', data: { code: 'provider_error', message: 'the model failed', status: 'failed', retryable: true, usage: null, result: null } },
];

/** Backoff without jitter: 75 ms, 150 ms, 300 ms, then give up. */
const BACKOFF: Partial<BackoffOptions> = { initialMs: 100, maxMs: 1000, factor: 2, maxRetries: 3, random: () => 0.5 };
/** Longer than any delay a transport may wait before reconnecting (the SSE `retry:` is 2 s). */
const RECONNECT_MS = 5_000;
/** "Never": no transport may still be retrying after this. */
const A_MINUTE = 60_000;

interface Wire {
  transport: StreamTransport;
  /** Connections to the server the client holds open now (event-stream responses, sockets). */
  open(): number;
}

const wires: Record<TransportKind, (server: ScriptedServer) => Wire> = {
  sse: (server) => {
    const http = httpWire(server);
    const transport = createSSETransport({ baseUrl: BASE, reader: 'eventsource', EventSource: http.EventSource, fetch: http.fetch, backoff: BACKOFF });
    return { transport, open: http.open };
  },
  'sse-fetch': (server) => {
    const http = httpWire(server);
    return { transport: createSSETransport({ baseUrl: BASE, reader: 'fetch', fetch: http.fetch, backoff: BACKOFF }), open: http.open };
  },
  websocket: (server) => {
    const ws = socketWire(server);
    const transport = createWebSocketTransport({ url: 'ws://localhost/ws/streams', baseUrl: BASE, WebSocket: ws.WebSocket, backoff: BACKOFF });
    return { transport, open: ws.open };
  },
};

/** Run timers up to `ms` from now, letting every promise chain settle between them. */
const settle = (ms = 0) => vi.advanceTimersByTimeAsync(ms);

/** What an event is, whatever the wire added (a socket frame's `stream_id`). */
const plain = (events: readonly StreamEvent[]) => events.map(({ id: eventId, type, data }) => ({ id: eventId, type, data }));
const ids = (events: readonly StreamEvent[]) => events.map((e) => e.id);

const QUESTION = { block_type: 'ask_question', input: 'Why does a straw look bent in water?' } as const;

describe.each(['sse', 'sse-fetch', 'websocket'] as const)('the %s transport keeps the transport contract', (kind) => {
  let server: ScriptedServer;
  let wire: Wire;

  beforeEach(() => {
    vi.useFakeTimers();
    server = new ScriptedServer(SCRIPT);
    wire = wires[kind](server);
  });

  afterEach(() => {
    wire.transport.dispose?.();
    vi.useRealTimers();
    FakeSocket.instances = [];
    expect(server.faults).toEqual([]);
  });

  it('names its kind', () => {
    expect(wire.transport.kind).toBe(kind);
  });

  it('start: delivers every event once and in order, the chunks make the text, and ends with done', async () => {
    const c = collect();
    const handle = await wire.transport.start(QUESTION, c.handlers);
    expect(handle.streamId).toBe('s1');
    expect(server.starts).toEqual([{ ...QUESTION, options: {} }]);
    expect(handle.closed).toBe(false);
    await settle();
    server.emit(3);
    await settle();
    expect(ids(c.events)).toEqual(ids(SCRIPT.slice(0, 3)));
    expect(handle.lastEventId).toBe(id(3));

    server.emit();
    await settle();
    expect(plain(c.events)).toEqual(plain(SCRIPT));
    expect(c.text()).toBe(FULL_TEXT);
    expect(c.chunks).toEqual(WORDS);
    expect(plain(c.completions)).toEqual(plain(SCRIPT.slice(-1)));
    expect(c.errors).toEqual([]);
    expect(c.calls.at(-1)).toBe('complete'); // nothing after the end
    expect(handle.closed).toBe(true);
    expect(handle.lastEventId).toBe(LAST_ID);
    // the connection was open while the events came, and is closed by the end
    expect(new Set(c.stateAtEvent)).toEqual(new Set(['open']));
    expect(c.connections.at(-1)).toBe('closed');
    await settle(A_MINUTE);
    expect(server.reads).toEqual([{ streamId: 's1', after: null }]);
    expect(wire.open()).toBe(0);
  });

  it('a dropped connection resumes from the last id: no word lost or repeated, though the server replays one', async () => {
    server.overlap = 1; // the server sends the event before the cursor again
    const c = collect();
    const handle = await wire.transport.start(QUESTION, c.handlers);
    await settle();
    server.emit(3); // start, "Light", " bends"
    await settle();
    server.drop();
    await settle();
    expect(handle.closed).toBe(false);
    expect(c.connections.at(-1)).toBe('reconnecting');
    server.emit(1); // " as": produced while the client is away, it must come with the replay
    await settle(RECONNECT_MS);
    expect(server.reads).toEqual([
      { streamId: 's1', after: null },
      { streamId: 's1', after: id(3) },
    ]);
    expect(c.connections.at(-1)).toBe('open');

    server.emit();
    await settle();
    expect(c.text()).toBe(FULL_TEXT);
    expect(c.chunks).toEqual(WORDS);
    expect(ids(c.events)).toEqual(ids(SCRIPT));
    expect(c.completions).toHaveLength(1);
    expect(c.errors).toEqual([]);
    expect(handle.lastEventId).toBe(LAST_ID);
    expect(handle.closed).toBe(true);
  });

  it('a second drop resumes from the newer cursor', async () => {
    server.overlap = 1;
    const c = collect();
    await wire.transport.start(QUESTION, c.handlers);
    await settle();
    server.emit(2);
    await settle();
    server.drop();
    await settle(RECONNECT_MS);
    server.emit(2);
    await settle();
    server.drop();
    await settle(RECONNECT_MS);
    server.emit();
    await settle();
    expect(server.reads.map((r) => r.after)).toEqual([null, id(2), id(4)]);
    expect(c.text()).toBe(FULL_TEXT);
    expect(ids(c.events)).toEqual(ids(SCRIPT));
  });

  it('resume(streamId, afterId) delivers only what follows afterId', async () => {
    server.overlap = 1;
    server.add('s7', SCRIPT.length); // a stream that has ended already
    const c = collect();
    const handle = wire.transport.resume('s7', id(3), c.handlers);
    expect(handle.streamId).toBe('s7');
    expect(handle.lastEventId).toBe(id(3));
    await settle();
    expect(server.reads).toEqual([{ streamId: 's7', after: id(3) }]);
    expect(plain(c.events)).toEqual(plain(SCRIPT.slice(3)));
    expect(c.text()).toBe(WORDS.slice(2).join(''));
    expect(c.completions).toHaveLength(1);
    expect(handle.closed).toBe(true);
    expect(handle.lastEventId).toBe(LAST_ID);
  });

  it('resume of an ended stream from its last id closes quietly: no event, no error, no retry', async () => {
    server.add('s7', SCRIPT.length);
    const c = collect();
    const handle = wire.transport.resume('s7', LAST_ID, c.handlers);
    await vi.advanceTimersByTimeAsync(A_MINUTE);
    expect(c.events).toEqual([]);
    expect(c.errors).toEqual([]);
    expect(handle.closed).toBe(true);
    expect(handle.lastEventId).toBe(LAST_ID);
    expect(c.connections.at(-1)).toBe('closed');
    expect(server.reads.filter((r) => r.streamId === 's7')).toHaveLength(1);
    expect(wire.open()).toBe(0);
  });

  it('resume of a running stream delivers what follows the cursor, then the live events', async () => {
    server.add('s7', 4);
    const c = collect();
    const handle = wire.transport.resume('s7', id(2), c.handlers);
    await settle();
    expect(ids(c.events)).toEqual([id(3), id(4)]);
    server.emit(Infinity, 's7');
    await settle();
    expect(ids(c.events)).toEqual(ids(SCRIPT.slice(2)));
    expect(c.text()).toBe(WORDS.slice(1).join(''));
    expect(handle.closed).toBe(true);
  });

  it('a terminal error event: onError (source stream) once, onComplete, and no reconnect', async () => {
    server = new ScriptedServer(FAILING);
    wire = wires[kind](server);
    const c = collect();
    const handle = await wire.transport.start(QUESTION, c.handlers);
    await settle();
    server.emit();
    await settle();
    expect(c.errors).toEqual([{ source: 'stream', code: 'provider_error', message: 'the model failed', retryable: true }]);
    expect(plain(c.completions)).toEqual(plain(FAILING.slice(-1)));
    expect(c.calls.filter((call) => call === 'error' || call === 'complete')).toEqual(['error', 'complete']);
    expect(c.text()).toBe('Light bends');
    expect(handle.closed).toBe(true);
    expect(handle.lastEventId).toBe(id(4));
    await settle(A_MINUTE);
    expect(server.reads).toHaveLength(1);
    expect(c.errors).toHaveLength(1);
    expect(wire.open()).toBe(0);
  });

  it('a stream the server does not have: stream_not_found, closed, and no endless retry', async () => {
    const c = collect();
    const handle = wire.transport.resume('gone', id(2), c.handlers);
    await settle(RECONNECT_MS);
    expect(c.errors).toEqual([expect.objectContaining({ source: 'transport', code: 'stream_not_found', retryable: false })]);
    expect(handle.closed).toBe(true);
    expect(c.completions).toEqual([]);
    expect(c.events).toEqual([]);
    const reads = server.reads.length;
    expect(reads).toBe(1);
    await settle(A_MINUTE);
    expect(server.reads).toHaveLength(reads);
    expect(c.errors).toHaveLength(1);
    expect(wire.open()).toBe(0);
  });

  it('a stream that expired while the connection was down: stream_not_found on reconnect, the text so far kept', async () => {
    const c = collect();
    const handle = await wire.transport.start(QUESTION, c.handlers);
    await settle();
    server.emit(3);
    await settle();
    server.drop();
    server.forget('s1');
    await settle(RECONNECT_MS);
    expect(c.errors).toEqual([expect.objectContaining({ source: 'transport', code: 'stream_not_found', retryable: false })]);
    expect(handle.closed).toBe(true);
    expect(c.text()).toBe('Light bends');
    expect(handle.lastEventId).toBe(id(3));
    await settle(A_MINUTE);
    expect(server.reads).toEqual([
      { streamId: 's1', after: null },
      { streamId: 's1', after: id(3) },
    ]);
    expect(c.errors).toHaveLength(1);
    expect(wire.open()).toBe(0);
  });

  it('a refused start rejects with StreamRequestError carrying the code, and reads nothing', async () => {
    server.refusal = {
      status: 429,
      error: { code: 'rate_limited', message: 'too many streams started; try again in 30 s', field: null },
      retryAfterS: 30,
    };
    const c = collect();
    const start = wire.transport.start(QUESTION, c.handlers);
    const settled = start.then(
      () => null,
      (error: unknown) => error,
    );
    await settle();
    const error = await settled;
    expect(error).toBeInstanceOf(StreamRequestError);
    expect((error as StreamRequestError).failure).toMatchObject({
      source: 'request',
      code: 'rate_limited',
      message: 'too many streams started; try again in 30 s',
    });
    expect(server.starts).toHaveLength(1);
    await settle(A_MINUTE);
    expect(server.reads).toEqual([]);
    expect(c.calls.filter((call) => call === 'event' || call === 'error' || call === 'complete')).toEqual([]);
    expect(wire.open()).toBe(0);
  });

  it('stop() asks the server to stop, and the done with status stopped still arrives', async () => {
    const c = collect();
    const handle = await wire.transport.start(QUESTION, c.handlers);
    await settle();
    server.emit(3);
    await settle();
    const stopping = handle.stop();
    await settle();
    await expect(stopping).resolves.toBeUndefined();
    expect(server.stops).toEqual(['s1']);
    expect(c.completions).toEqual([expect.objectContaining({ id: id(4), type: 'done', data: expect.objectContaining({ status: 'stopped' }) })]);
    expect(c.text()).toBe('Light bends');
    expect(c.errors).toEqual([]);
    expect(handle.closed).toBe(true);
    expect(handle.lastEventId).toBe(id(4));
    server.emit(); // nothing: the stream has ended
    await settle(A_MINUTE);
    expect(c.events).toHaveLength(4);
    expect(server.reads).toHaveLength(1);
    expect(wire.open()).toBe(0);
  });

  it('close() stops callbacks: nothing is delivered after it, and generation goes on', async () => {
    const c = collect();
    const handle = await wire.transport.start(QUESTION, c.handlers);
    await settle();
    server.emit(3);
    await settle();
    const calls = c.calls.length;
    handle.close();
    expect(handle.closed).toBe(true);
    await settle();
    expect(wire.open()).toBe(0);
    expect(server.readers('s1')).toBe(0);
    server.emit();
    await settle(A_MINUTE);
    expect(c.calls).toHaveLength(calls);
    expect(c.text()).toBe('Light bends');
    expect(handle.lastEventId).toBe(id(3));
    expect(server.stops).toEqual([]);
    expect(server.reads).toHaveLength(1);
  });

  it('close() while reconnecting cancels the reconnect', async () => {
    const c = collect();
    const handle = await wire.transport.start(QUESTION, c.handlers);
    await settle();
    server.emit(2);
    await settle();
    server.drop();
    await settle();
    expect(c.connections.at(-1)).toBe('reconnecting');
    const calls = c.calls.length;
    handle.close();
    server.emit();
    await settle(A_MINUTE);
    expect(server.reads).toHaveLength(1);
    expect(c.calls).toHaveLength(calls);
    expect(handle.closed).toBe(true);
    expect(wire.open()).toBe(0);
  });
});
