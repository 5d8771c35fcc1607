/**
 * The base path a host mounts our routes under (`/ai`): every URL the transports and hooks build,
 * and the `events_url` the server hands out (already prefixed by its `url_for`) not prefixed twice.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { fetchStreamStatus } from './api.ts';
import { createTransport } from './streamClient.ts';
import { apiUrl, normalizeBase, serverUrl, socketUrl } from './urls.ts';
import { createWebSocketTransport } from './wsTransport.ts';

afterEach(() => vi.unstubAllGlobals());

const page = { protocol: 'https:', host: 'school.example' };

describe('urls', () => {
  it('puts our routes under the base, with or without a trailing slash', () => {
    expect(normalizeBase(undefined)).toBe('');
    expect(normalizeBase('/ai/')).toBe('/ai');
    expect(apiUrl('', '/api/streams')).toBe('/api/streams');
    expect(apiUrl('/ai', '/api/streams')).toBe('/ai/api/streams');
    expect(apiUrl('/ai/', '/api/streams')).toBe('/ai/api/streams');
    expect(apiUrl('https://api.example.com/ai', '/api/streams')).toBe('https://api.example.com/ai/api/streams');
  });

  it('uses a server path as it is when it already carries the base path, else puts it under the base', () => {
    expect(serverUrl('', '/api/streams/s1/events')).toBe('/api/streams/s1/events');
    expect(serverUrl('/ai', '/ai/api/streams/s1/events')).toBe('/ai/api/streams/s1/events');
    expect(serverUrl('/ai', '/api/streams/s1/events')).toBe('/ai/api/streams/s1/events'); // a proxy added /ai
    expect(serverUrl('/ai', '/aide/x')).toBe('/ai/aide/x');
    expect(serverUrl('https://api.example.com/ai', '/ai/api/streams/s1/events')).toBe('https://api.example.com/ai/api/streams/s1/events');
    expect(serverUrl('http://localhost', '/api/streams/s1/events')).toBe('http://localhost/api/streams/s1/events');
    expect(serverUrl('/ai', 'https://cdn.example.com/e')).toBe('https://cdn.example.com/e');
  });

  it('builds the socket URL on the page host, or on the base host', () => {
    expect(socketUrl('', page)).toBe('wss://school.example/ws/streams');
    expect(socketUrl('/ai', page)).toBe('wss://school.example/ai/ws/streams');
    expect(socketUrl('/ai', { protocol: 'http:', host: 'localhost:5173' })).toBe('ws://localhost:5173/ai/ws/streams');
    expect(socketUrl('https://api.example.com/ai/', page)).toBe('wss://api.example.com/ai/ws/streams');
    expect(socketUrl('http://127.0.0.1:8000', page)).toBe('ws://127.0.0.1:8000/ws/streams');
  });
});

describe('baseUrl through createTransport', () => {
  function recordingFetch(eventsUrl: string) {
    const calls: string[] = [];
    const fetch = vi.fn(async (input: RequestInfo | URL) => {
      const url = String(input);
      calls.push(url);
      if (url.endsWith('/api/streams')) return Response.json({ stream_id: 's1', events_url: eventsUrl }, { status: 201 });
      return new Response(new ReadableStream(), { status: 200, headers: { 'content-type': 'text/event-stream' } });
    });
    return { calls, fetch: fetch as unknown as typeof globalThis.fetch };
  }

  it.each([
    ['the server prefixed it', '/ai/api/streams/s1/events'],
    ['a proxy prefixes it', '/api/streams/s1/events'],
  ])('SSE: starts at <base>/api/streams and reads <base>/api/streams/<id>/events once prefixed (%s)', async (_, eventsUrl) => {
    const { calls, fetch } = recordingFetch(eventsUrl);
    const transport = createTransport('sse-fetch', { baseUrl: '/ai', sse: { fetch } });
    const handle = await transport.start({ block_type: 'quiz', input: 'x' }, {});
    await vi.waitFor(() => expect(calls).toHaveLength(2));
    await handle.stop();
    handle.close();
    expect(calls).toEqual(['/ai/api/streams', '/ai/api/streams/s1/events', '/ai/api/streams/s1/stop']);
  });

  it('SSE: resume reads <base>/api/streams/<id>/events?after=', async () => {
    const { calls, fetch } = recordingFetch('');
    const handle = createTransport('sse-fetch', { baseUrl: '/ai/', sse: { fetch } }).resume('s1', 'e-3', {});
    await vi.waitFor(() => expect(calls).toHaveLength(1));
    handle.close();
    expect(calls).toEqual(['/ai/api/streams/s1/events?after=e-3']);
  });

  it('WebSocket: opens <base>/ws/streams, and stops over <base>/api/... when no socket is open', async () => {
    const opened: string[] = [];
    class Socket {
      static readonly OPEN = 1;
      readyState = 0;
      onopen = null;
      onmessage = null;
      onclose = null;
      onerror = null;
      constructor(url: string) {
        opened.push(url);
      }
      send() {}
      close() {}
    }
    const fetch = vi.fn(async () => new Response(null, { status: 202 }));
    vi.stubGlobal('fetch', fetch);
    const transport = createTransport('websocket', { baseUrl: '/ai', websocket: { WebSocket: Socket as unknown as typeof WebSocket } });
    await transport.stop('s1');
    expect(fetch).toHaveBeenCalledWith('/ai/api/streams/s1/stop', { method: 'POST' });
    transport.resume('s1', null, {}).close();
    expect(opened).toEqual([`ws://${window.location.host}/ai/ws/streams`]);
    transport.dispose?.();
    createWebSocketTransport({ url: 'wss://elsewhere/ws', WebSocket: Socket as unknown as typeof WebSocket }).resume('s2', null, {});
    expect(opened.at(-1)).toBe('wss://elsewhere/ws');
  });

  it('fetchStreamStatus asks <base>/api/streams/<id>', async () => {
    const fetch = vi.fn(async () => Response.json({ stream_id: 's1', block_type: 'quiz', status: 'running' }));
    vi.stubGlobal('fetch', fetch);
    await fetchStreamStatus('s 1', '/ai');
    expect(fetch).toHaveBeenCalledWith('/ai/api/streams/s%201', expect.anything());
  });
});
