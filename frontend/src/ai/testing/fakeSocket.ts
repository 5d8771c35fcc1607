/**
 * A WebSocket the test plays the server of: it records what the client sent, and the
 * test opens it, sends it frames and drops it. `socketWire` (streamServer.ts) puts a
 * scripted server behind it; `wsTransport.test.ts` drives it by hand.
 */
import type { StreamEvent, WsClientMessage } from '../events.ts';

export class FakeSocket {
  static instances: FakeSocket[] = [];
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  readyState = 0;
  sent: WsClientMessage[] = [];
  closedWith: number | null = null;
  onopen: ((e: Event) => void) | null = null;
  onmessage: ((e: MessageEvent) => void) | null = null;
  onclose: ((e: CloseEvent) => void) | null = null;
  onerror: ((e: Event) => void) | null = null;

  constructor(readonly url: string) {
    FakeSocket.instances.push(this);
  }
  send(text: string): void {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open');
    this.sent.push(JSON.parse(text) as WsClientMessage);
  }
  close(code = 1000): void {
    this.closedWith = code;
    this.readyState = 3;
  }
  // -- the server's side
  open(): void {
    this.readyState = 1;
    this.onopen?.(new Event('open'));
  }
  receive(frame: object): void {
    this.onmessage?.(new MessageEvent('message', { data: JSON.stringify(frame) }));
  }
  /** A stream event as the server frames it on a socket: the SSE envelope plus `stream_id`. */
  event(streamId: string, event: StreamEvent): void {
    this.receive(wsFrame(streamId, event));
  }
  /** The connection is lost (1006 by default); nothing happens on a socket already closed. */
  drop(code = 1006): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.(new CloseEvent('close', { code }));
  }
  static get last(): FakeSocket {
    const socket = FakeSocket.instances.at(-1);
    if (!socket) throw new Error('no socket');
    return socket;
  }
}

/** The server's WebSocket frame of an event (a reset has no id, as over SSE). */
export function wsFrame(streamId: string, event: StreamEvent): object {
  if (event.type === 'reset') return { stream_id: streamId, type: event.type, data: event.data };
  return { stream_id: streamId, id: event.id, type: event.type, data: event.data };
}
