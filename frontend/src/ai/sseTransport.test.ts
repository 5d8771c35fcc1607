/**
 * The SSE transport against msw: framing split across network chunks,
 * multi-line data, reconnects that send the cursor (Last-Event-ID from
 * EventSource, `?after=` from us) without duplicating text, error events,
 * stop, and a refused start.
 */
import { EventSource as EventSourcePolyfill } from 'eventsource';
import { http, HttpResponse } from 'msw';
import { setupServer } from 'msw/node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { doneEvent, id, sse, startEvent, token } from '../test/fakeTransport.ts';
import type { StartData, StreamEvent } from './events.ts';
import { createSSETransport } from './sseTransport.ts';
import { collect } from './testing/collect.ts';
import { controlledBody } from './testing/streamServer.ts';
import { StreamRequestError } from './transport.ts';

const BASE = 'http://localhost';
const EVENTS = `${BASE}/api/streams/s1/events`;
const server = setupServer();

beforeAll(() => server.listen({ onUnhandledRequest: 'error' }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const fastBackoff = { initialMs: 5, maxMs: 20, maxRetries: 3, random: () => 0.5 };

function sseResponse(body: ReadableStream<Uint8Array> | string, status = 200) {
  return new HttpResponse(body, { status, headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' } });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('fetch reader (eventsource-parser)', () => {
  it('parses an event split across network chunks and multi-line data', async () => {
    const body = controlledBody();
    server.use(http.get(EVENTS, () => sseResponse(body.stream)));
    const c = collect();
    const transport = createSSETransport({ baseUrl: BASE, reader: 'fetch', backoff: fastBackoff });
    transport.resume('s1', null, c.handlers);

    body.push('retry: 2000\n\nid: abc123-1\nevent: st');
    body.push('art\ndata: {"stream_id":"s1","block_type":"ask_question","provider":"scripted",');
    body.push('"model":"m","scripted":true}\n\n: hb\n\nid: abc123-2\nevent: token\ndata: {"text":\n');
    // JSON spread over two data: lines is joined with "\n" (still valid JSON)
    body.push('data: "Hel\u00e9lo",\ndata: "tokens": 1}\n');
    body.push('\nid: abc123-3\r\nevent: token\r\ndata: {"text":" world","tokens":1}\r\n\r\n');
    body.push(sse(doneEvent(4, 'Hel\u00e9lo world')));
    body.close();

    const end = await c.ended;
    expect(end).toMatchObject({ type: 'done' });
    expect(c.events.map((e) => e.type)).toEqual(['start', 'token', 'token', 'done']);
    expect(c.text()).toBe('Hel\u00e9lo world');
  });

  it('reconnects with ?after= after the body ends early, and shows no duplicated text', async () => {
    const urls: URL[] = [];
    server.use(
      http.get(EVENTS, ({ request }) => {
        const url = new URL(request.url);
        urls.push(url);
        if (urls.length === 1) return sseResponse(sse(startEvent(), token(2, 'One'), token(3, ' two')));
        // the server replays from the cursor; a duplicate of 3 slips in and must be dropped
        return sseResponse(sse(token(3, ' two'), token(4, ' three'), doneEvent(5, 'One two three')));
      }),
    );
    const c = collect();
    createSSETransport({ baseUrl: BASE, reader: 'fetch', backoff: fastBackoff }).resume('s1', null, c.handlers);
    await c.ended;
    expect(urls).toHaveLength(2);
    expect(urls[0]?.searchParams.get('after')).toBeNull();
    expect(urls[1]?.searchParams.get('after')).toBe(id(3));
    expect(c.text()).toBe('One two three');
    expect(c.events.filter((e) => e.id === id(3))).toHaveLength(1);
  });

  it('a cut between a reset and its snapshot resumes from the old cursor and gets both again', async () => {
    const urls: URL[] = [];
    const reset: StreamEvent = { id: '', type: 'reset', data: { reason: 'epoch_mismatch', message: 'the log was recreated' } };
    const snapshot: StreamEvent = {
      id: id(7),
      type: 'snapshot',
      data: { start: startEvent().data as StartData, text: 'One two three', questions: [], output_tokens: 3 },
    };
    server.use(
      http.get(EVENTS, ({ request }) => {
        urls.push(new URL(request.url));
        if (urls.length === 1) return sseResponse(sse(reset)); // the connection ends right after the reset
        return sseResponse(sse(reset, snapshot, doneEvent(8, 'One two three')));
      }),
    );
    const c = collect();
    createSSETransport({ baseUrl: BASE, reader: 'fetch', backoff: fastBackoff }).resume('s1', id(3, 'old'), c.handlers);
    await c.ended;
    expect(urls.map((u) => u.searchParams.get('after'))).toEqual([id(3, 'old'), id(3, 'old')]);
    expect(c.events.map((e) => e.type)).toEqual(['reset', 'reset', 'snapshot', 'done']);
  });

  it('stops retrying when the stream is gone (404)', async () => {
    server.use(
      http.get(EVENTS, () =>
        HttpResponse.json({ error: { code: 'stream_not_found', message: 'no such stream', field: 'stream_id' } }, { status: 404 }),
      ),
    );
    const c = collect();
    createSSETransport({ baseUrl: BASE, reader: 'fetch', backoff: fastBackoff }).resume('s1', id(7), c.handlers);
    const end = await c.ended;
    expect(end).toMatchObject({ source: 'transport', code: 'stream_not_found', retryable: false });
  });

  it('delivers an error event once, then closes without reconnecting', async () => {
    let requests = 0;
    server.use(
      http.get(EVENTS, () => {
        requests += 1;
        const error: StreamEvent = {
          id: id(3),
          type: 'error',
          data: { code: 'provider_error', message: 'the model failed', status: 'failed', retryable: true, usage: null, result: null },
        };
        return sseResponse(sse(startEvent(), token(2, 'Half an answer'), error));
      }),
    );
    const c = collect();
    const handle = createSSETransport({ baseUrl: BASE, reader: 'fetch', backoff: fastBackoff }).resume('s1', null, c.handlers);
    const end = await c.ended;
    expect(end).toMatchObject({ type: 'error' });
    expect(c.errors).toEqual([{ source: 'stream', code: 'provider_error', message: 'the model failed', retryable: true }]);
    expect(c.text()).toBe('Half an answer');
    await sleep(40);
    expect(requests).toBe(1);
    expect(handle.closed).toBe(true);
  });

  it('aborts the request when closed', async () => {
    const body = controlledBody();
    let aborted = false;
    server.use(
      http.get(EVENTS, ({ request }) => {
        request.signal.addEventListener('abort', () => (aborted = true));
        return sseResponse(body.stream);
      }),
    );
    const c = collect();
    const handle = createSSETransport({ baseUrl: BASE, reader: 'fetch' }).resume('s1', null, c.handlers);
    body.push(sse(startEvent(), token(2, 'x')));
    await expect.poll(() => c.events.length).toBe(2);
    handle.close();
    await expect.poll(() => aborted).toBe(true);
    body.push(sse(token(3, 'late')));
    await sleep(10);
    expect(c.text()).toBe('x');
  });
});

describe('EventSource reader', () => {
  const transport = () =>
    createSSETransport({
      baseUrl: BASE,
      reader: 'eventsource',
      EventSource: EventSourcePolyfill as unknown as typeof EventSource,
      backoff: fastBackoff,
    });

  it('resumes by itself with Last-Event-ID after a dropped connection, without duplicates', async () => {
    const seen: { lastEventId: string | null; after: string | null }[] = [];
    server.use(
      http.get(EVENTS, ({ request }) => {
        seen.push({ lastEventId: request.headers.get('last-event-id'), after: new URL(request.url).searchParams.get('after') });
        if (seen.length === 1) return sseResponse(`retry: 5\n\n${sse(startEvent(), token(2, 'Sun'), token(3, 'light'))}`);
        return sseResponse(sse(token(3, 'light'), token(4, ' feeds'), doneEvent(5, 'Sunlight feeds')));
      }),
    );
    const c = collect();
    transport().resume('s1', null, c.handlers);
    await c.ended;
    expect(seen).toEqual([
      { lastEventId: null, after: null },
      { lastEventId: id(3), after: null },
    ]);
    expect(c.text()).toBe('Sunlight feeds');
  });

  it('reconnects itself with ?after= when EventSource gives up on a non-200', async () => {
    const urls: string[] = [];
    server.use(
      http.get(`${BASE}/api/streams/s1`, () => HttpResponse.json({ stream_id: 's1', status: 'running' })),
      http.get(EVENTS, ({ request }) => {
        urls.push(request.url);
        if (urls.length === 1) return sseResponse(`retry: 5\n\n${sse(startEvent(), token(2, 'Leaf'))}`);
        if (urls.length === 2) return HttpResponse.json({ error: { code: 'unavailable', message: 'busy' } }, { status: 503 });
        return sseResponse(sse(token(3, ' cells'), doneEvent(4, 'Leaf cells')));
      }),
    );
    const c = collect();
    transport().resume('s1', null, c.handlers);
    await c.ended;
    expect(urls).toHaveLength(3);
    expect(new URL(urls[2] as string).searchParams.get('after')).toBe(id(2));
    expect(c.text()).toBe('Leaf cells');
  });

  it('gives up with stream_not_found when the status check says 404', async () => {
    server.use(
      http.get(`${BASE}/api/streams/s1`, () => HttpResponse.json({ error: { code: 'stream_not_found', message: 'x' } }, { status: 404 })),
      http.get(EVENTS, () => HttpResponse.json({ error: { code: 'stream_not_found', message: 'x' } }, { status: 404 })),
    );
    const c = collect();
    transport().resume('s1', id(3), c.handlers);
    expect(await c.ended).toMatchObject({ code: 'stream_not_found', retryable: false });
  });
});

describe('start and stop over HTTP', () => {
  it('starts with POST /api/streams and reads events_url', async () => {
    let body: unknown = null;
    server.use(
      http.post(`${BASE}/api/streams`, async ({ request }) => {
        body = await request.json();
        return HttpResponse.json(
          {
            stream_id: 's1',
            block_type: 'ask_question',
            status: 'running',
            events_url: '/api/streams/s1/events',
            status_url: '/api/streams/s1',
            stop_url: '/api/streams/s1/stop',
            websocket_url: '/ws/streams',
          },
          { status: 201 },
        );
      }),
      http.get(EVENTS, () => sseResponse(sse(startEvent(), token(2, 'Hi'), doneEvent(3, 'Hi')))),
    );
    const c = collect();
    const handle = await createSSETransport({ baseUrl: BASE, reader: 'fetch' }).start(
      { block_type: 'ask_question', input: 'Why?', options: { max_tokens: 50 } },
      c.handlers,
    );
    expect(handle.streamId).toBe('s1');
    await c.ended;
    expect(body).toEqual({ block_type: 'ask_question', input: 'Why?', options: { max_tokens: 50 } });
    expect(c.text()).toBe('Hi');
  });

  it('rejects a refused start with the server error', async () => {
    server.use(
      http.post(`${BASE}/api/streams`, () =>
        HttpResponse.json({ error: { code: 'input_too_long', message: 'at most 2000 characters', field: 'input' } }, { status: 422 }),
      ),
    );
    const start = createSSETransport({ baseUrl: BASE }).start({ block_type: 'ask_question', input: 'x'.repeat(3000) }, {});
    await expect(start).rejects.toBeInstanceOf(StreamRequestError);
    await expect(start).rejects.toMatchObject({
      failure: { source: 'request', code: 'input_too_long', field: 'input', httpStatus: 422, retryable: false },
    });
  });

  it('stops with POST /api/streams/<id>/stop; the stopped done event still arrives', async () => {
    const body = controlledBody();
    let stopped = 0;
    server.use(
      http.get(EVENTS, () => sseResponse(body.stream)),
      http.post(`${BASE}/api/streams/s1/stop`, () => {
        stopped += 1;
        body.push(sse(doneEvent(3, 'Par', 'stopped')));
        body.close();
        return HttpResponse.json({ stream_id: 's1', status: 'stopped' });
      }),
    );
    const c = collect();
    const handle = createSSETransport({ baseUrl: BASE, reader: 'fetch' }).resume('s1', null, c.handlers);
    body.push(sse(startEvent(), token(2, 'Par')));
    await expect.poll(() => c.events.length).toBe(2);
    await handle.stop();
    expect(await c.ended).toMatchObject({ type: 'done', data: { status: 'stopped' } });
    expect(stopped).toBe(1);
    expect(c.text()).toBe('Par');
  });
});
