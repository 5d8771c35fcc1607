/** An in-memory StreamTransport: tests push events and see what the hooks asked for. */
import type { QuizAnswer, StartRequest, StreamEvent } from '../ai/events.ts';
import { Delivery, type StreamHandle, type StreamHandlers, type StreamTransport, type TransportKind } from '../ai/transport.ts';
import type { FrameScheduler } from '../ai/streamHooks.ts';

export class FakeStream {
  readonly delivery: Delivery;
  closeCalls = 0;
  stopCalls = 0;
  readonly handle: StreamHandle;
  constructor(
    readonly streamId: string,
    readonly afterId: string | null,
    readonly handlers: StreamHandlers,
  ) {
    this.delivery = new Delivery(handlers, afterId, () => undefined);
    const self = this;
    this.handle = {
      streamId,
      get lastEventId() {
        return self.delivery.cursor.lastEventId;
      },
      get closed() {
        return self.delivery.closed;
      },
      async stop() {
        self.stopCalls += 1;
      },
      close() {
        self.closeCalls += 1;
        self.delivery.finish(false);
      },
    };
  }
  emit(...events: StreamEvent[]): void {
    for (const event of events) this.delivery.deliver(event);
  }
}

export class FakeTransport implements StreamTransport {
  readonly starts: StartRequest[] = [];
  readonly streams: FakeStream[] = [];
  readonly resumes: { streamId: string; afterId: string | null }[] = [];
  private next = 0;
  constructor(readonly kind: TransportKind = 'sse') {}

  get last(): FakeStream {
    const stream = this.streams.at(-1);
    if (!stream) throw new Error('no stream yet');
    return stream;
  }

  async start(request: StartRequest, handlers: StreamHandlers): Promise<StreamHandle> {
    this.starts.push(request);
    this.next += 1;
    const stream = new FakeStream(`s${this.next}`, null, handlers);
    this.streams.push(stream);
    return stream.handle;
  }

  resume(streamId: string, afterId: string | null, handlers: StreamHandlers): StreamHandle {
    this.resumes.push({ streamId, afterId });
    const stream = new FakeStream(streamId, afterId, handlers);
    this.streams.push(stream);
    return stream.handle;
  }

  async stop(): Promise<void> {}

  /** Answers asked for; the right choice of a question is `index % 4`, as the scripted quiz has it. */
  readonly answers: { streamId: string; index: number; choice: number }[] = [];
  async answer(streamId: string, index: number, choice: number): Promise<QuizAnswer> {
    this.answers.push({ streamId, index, choice });
    const right = index % 4;
    return { index, choice, correct: choice === right, answer_index: right, explanation: `Because ${right}.` };
  }
}

/** Frames that run only when the test says so. */
export class ManualFrames implements FrameScheduler {
  private callbacks = new Map<number, () => void>();
  private id = 0;
  requested = 0;
  request(callback: () => void): number {
    this.id += 1;
    this.requested += 1;
    this.callbacks.set(this.id, callback);
    return this.id;
  }
  cancel(handle: unknown): void {
    this.callbacks.delete(handle as number);
  }
  get pending(): number {
    return this.callbacks.size;
  }
  run(): void {
    const callbacks = [...this.callbacks.values()];
    this.callbacks.clear();
    for (const callback of callbacks) callback();
  }
}

// -- event builders -------------------------------------------------------------

export const EPOCH = 'abc123';
export const id = (seq: number, epoch = EPOCH) => `${epoch}-${seq}`;

export function startEvent(seq = 1, blockType: StartRequest['block_type'] = 'ask_question', streamId = 's1'): StreamEvent {
  return {
    id: id(seq),
    type: 'start',
    data: { stream_id: streamId, block_type: blockType, provider: 'scripted', model: 'scripted-v1', scripted: true, notice: null },
  };
}

export function token(seq: number, text: string): StreamEvent {
  return { id: id(seq), type: 'token', data: { text, tokens: 1 } };
}

export function doneEvent(seq: number, text: string, status: 'complete' | 'stopped' = 'complete', blockType: StartRequest['block_type'] = 'ask_question'): StreamEvent {
  return {
    id: id(seq),
    type: 'done',
    data: { status, reason: status === 'complete' ? 'finished' : 'stop_requested', usage: { input_tokens: 5, output_tokens: seq - 2 }, result: { block_type: blockType, text } },
  };
}

/** SSE bytes of events, as the server frames them. */
export function sse(...events: StreamEvent[]): string {
  // a reset is framed without an id, as the server frames it
  return events
    .map((e) => `${e.type === 'reset' ? '' : `id: ${e.id}\n`}event: ${e.type}\ndata: ${JSON.stringify(e.data)}\n\n`)
    .join('');
}
