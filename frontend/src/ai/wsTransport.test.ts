/**
 * The WebSocket transport with a fake socket injected: start/accepted, a
 * dropped socket that reconnects and resumes from the last event id with no
 * duplicated text, stop, a refused start, and the socket closing when the
 * last stream ends.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { doneEvent, id, startEvent, token } from '../test/fakeTransport.ts';
import type { WsClientMessage } from './events.ts';
import { collect } from './testing/collect.ts';
import { FakeSocket } from './testing/fakeSocket.ts';
import { StreamRequestError, type StreamHandlers } from './transport.ts';
import { createWebSocketTransport } from './wsTransport.ts';

afterEach(() => {
  FakeSocket.instances = [];
});

const make = () =>
  createWebSocketTransport({
    url: 'ws://test/ws/streams',
    WebSocket: FakeSocket as unknown as typeof WebSocket,
    backoff: { initialMs: 5, maxMs: 20, maxRetries: 3, random: () => 0.5 },
  });

async function startAccepted(transport: ReturnType<typeof make>, handlers: StreamHandlers) {
  const pending = transport.start({ block_type: 'ask_question', input: 'Why is the sky blue?' }, handlers);
  const socket = FakeSocket.last;
  socket.open();
  const start = socket.sent[0] as Extract<WsClientMessage, { type: 'start' }>;
  expect(start).toMatchObject({ type: 'start', block_type: 'ask_question', input: 'Why is the sky blue?' });
  socket.receive({ type: 'accepted', request_id: start.request_id, stream_id: 's1', action: 'start' });
  // the events follow `accepted` at once, before the start promise has settled
  socket.event('s1', startEvent());
  const handle = await pending;
  return { socket, handle };
}

describe('WebSocket transport', () => {
  it('starts a stream and delivers its events', async () => {
    const c = collect();
    const { socket, handle } = await startAccepted(make(), c.handlers);
    socket.event('s1', token(2, 'Blue'));
    socket.event('s1', token(3, ' light'));
    socket.event('other', token(4, ' not mine'));
    socket.event('s1', doneEvent(4, 'Blue light'));
    expect(c.text()).toBe('Blue light');
    expect(c.completed()).toMatchObject({ type: 'done' });
    expect(handle.closed).toBe(true);
    // last subscription gone: the socket is closed normally
    expect(socket.closedWith).toBe(1000);
  });

  it('reconnects after a drop and resumes from the last event id without duplicates', async () => {
    const c = collect();
    const { socket } = await startAccepted(make(), c.handlers);
    socket.event('s1', token(2, 'Rayleigh'));
    socket.event('s1', token(3, ' scattering'));
    socket.drop();

    await expect.poll(() => FakeSocket.instances.length).toBe(2);
    const again = FakeSocket.last;
    again.open();
    expect(again.sent).toEqual([expect.objectContaining({ type: 'resume', stream_id: 's1', after: id(3) })]);
    const resume = again.sent[0] as Extract<WsClientMessage, { type: 'resume' }>;
    again.receive({ type: 'accepted', request_id: resume.request_id, stream_id: 's1', action: 'resume' });
    again.event('s1', token(3, ' scattering')); // a duplicate must not show
    again.event('s1', token(4, ' wins'));
    again.event('s1', doneEvent(5, 'Rayleigh scattering wins'));
    expect(c.text()).toBe('Rayleigh scattering wins');
    expect(c.errors).toEqual([]);
  });

  it('gives up after maxRetries failed reconnects, keeping what arrived', async () => {
    const c = collect();
    const { socket } = await startAccepted(make(), c.handlers);
    socket.event('s1', token(2, 'Kept'));
    socket.drop();
    for (let attempt = 0; attempt < 3; attempt += 1) {
      await expect.poll(() => FakeSocket.instances.length).toBe(attempt + 2);
      FakeSocket.last.drop();
    }
    await expect.poll(() => c.errors.length).toBe(1);
    expect(c.errors[0]).toMatchObject({ source: 'transport', code: 'connection_lost', retryable: true });
    expect(c.text()).toBe('Kept');
  });

  it('resumes a stream by id with the given cursor (transport switch, second tab)', async () => {
    const c = collect();
    make().resume('s9', id(5), c.handlers);
    const socket = FakeSocket.last;
    socket.open();
    expect(socket.sent).toEqual([expect.objectContaining({ type: 'resume', stream_id: 's9', after: id(5) })]);
  });

  it('stops over the socket', async () => {
    const c = collect();
    const transport = make();
    const { socket, handle } = await startAccepted(transport, c.handlers);
    const stopping = handle.stop();
    const stop = socket.sent.at(-1) as Extract<WsClientMessage, { type: 'stop' }>;
    expect(stop).toMatchObject({ type: 'stop', stream_id: 's1' });
    socket.receive({ type: 'accepted', request_id: stop.request_id, stream_id: 's1', action: 'stop' });
    await stopping;
    socket.event('s1', doneEvent(2, '', 'stopped'));
    expect(c.completed()).toMatchObject({ data: { status: 'stopped' } });
  });

  it('rejects a refused start', async () => {
    const pending = make().start({ block_type: 'ask_question', input: '' }, {});
    const socket = FakeSocket.last;
    socket.open();
    const start = socket.sent[0] as Extract<WsClientMessage, { type: 'start' }>;
    socket.receive({
      type: 'rejected',
      request_id: start.request_id,
      stream_id: null,
      error: { code: 'input_empty', message: 'the input is empty', field: 'input' },
    });
    await expect(pending).rejects.toBeInstanceOf(StreamRequestError);
    await expect(pending).rejects.toMatchObject({ failure: { code: 'input_empty', field: 'input' } });
    expect(socket.closedWith).toBe(1000); // nothing left to read: closed
  });

  it('fails a stream the server no longer has on resume', async () => {
    const c = collect();
    make().resume('gone', id(2), c.handlers);
    const socket = FakeSocket.last;
    socket.open();
    const resume = socket.sent[0] as Extract<WsClientMessage, { type: 'resume' }>;
    socket.receive({
      type: 'rejected',
      request_id: resume.request_id,
      stream_id: 'gone',
      error: { code: 'stream_not_found', message: 'no such stream', field: 'stream_id' },
    });
    expect(c.errors).toEqual([expect.objectContaining({ code: 'stream_not_found', source: 'transport' })]);
    expect(socket.closedWith).toBe(1000);
  });

  it('shares one socket between streams and closes it with the last one', async () => {
    const transport = make();
    const a = collect();
    const b = collect();
    const ha = transport.resume('a', null, a.handlers);
    const hb = transport.resume('b', null, b.handlers);
    expect(FakeSocket.instances).toHaveLength(1);
    const socket = FakeSocket.last;
    socket.open();
    expect(socket.sent.map((m) => m.type === 'resume' && m.stream_id)).toEqual(['a', 'b']);
    ha.close();
    expect(socket.closedWith).toBeNull();
    hb.close();
    expect(socket.closedWith).toBe(1000);
  });
});
