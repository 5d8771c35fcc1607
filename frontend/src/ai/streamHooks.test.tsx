/**
 * The hooks over an injected fake transport (no I/O): rAF batching, snapshot
 * in one commit, stop and retry, transport switch from the same cursor, error
 * events, and unmount closing the connection (also with the real SSE
 * transport over a fake EventSource).
 */
import { act, render, renderHook } from '@testing-library/react';
import { Profiler, type ReactNode } from 'react';
import { describe, expect, it } from 'vitest';
import { FakeTransport, ManualFrames, doneEvent, id, startEvent, token } from '../test/fakeTransport.ts';
import type { StreamEvent } from './events.ts';
import { createSSETransport } from './sseTransport.ts';
import { StreamTransportProvider, useAIBlockStreaming, useAIStreaming, type UseAIStreamingOptions } from './streamHooks.ts';
import type { StreamTransport } from './transport.ts';

function setup(options: UseAIStreamingOptions & { transport: StreamTransport }) {
  let commits = 0;
  const wrapper = ({ children }: { children: ReactNode }) => (
    <Profiler id="stream" onRender={() => (commits += 1)}>
      {children}
    </Profiler>
  );
  const hook = renderHook(() => useAIStreaming(options), { wrapper });
  return { ...hook, commits: () => commits };
}

describe('useAIStreaming', () => {
  it('commits at most once per animation frame however many events arrive', async () => {
    const transport = new FakeTransport();
    const frames = new ManualFrames();
    const { result, commits } = setup({ transport, frames });
    await act(() => result.current.start({ block_type: 'ask_question', input: 'Why?' }));
    const before = commits();

    act(() => {
      transport.last.emit(startEvent());
      for (let seq = 2; seq < 302; seq += 1) transport.last.emit(token(seq, 'w'));
    });
    expect(commits()).toBe(before); // nothing committed until the frame
    expect(frames.pending).toBe(1);
    act(() => frames.run());
    expect(commits()).toBe(before + 1);
    expect(result.current.text).toBe('w'.repeat(300));
    expect(result.current.outputTokens).toBe(300);
    expect(result.current.status).toBe('streaming');

    act(() => {
      for (let seq = 302; seq < 402; seq += 1) transport.last.emit(token(seq, 'x'));
      transport.last.emit(doneEvent(402, ''));
    });
    act(() => frames.run());
    expect(commits()).toBe(before + 2);
    expect(result.current.status).toBe('done');
    expect(result.current.outcome).toBe('complete');
    expect(frames.requested).toBeLessThanOrEqual(3);
  });

  it('applies a snapshot in one commit, replacing the state, even for a seen id', async () => {
    const transport = new FakeTransport();
    const frames = new ManualFrames();
    const { result, commits } = setup({ transport, frames });
    act(() => result.current.join('s7'));
    act(() => {
      transport.last.emit(startEvent(1, 'ask_question', 's7'), token(2, 'old'), token(3, ' text'));
    });
    act(() => frames.run());
    const before = commits();
    const snapshot: StreamEvent = {
      id: id(3),
      type: 'snapshot',
      data: { start: null, text: 'The whole answer so far', questions: [], output_tokens: 9 },
    };
    act(() => {
      transport.last.emit(
        { id: id(3), type: 'reset', data: { reason: 'epoch_mismatch', message: 'the log was recreated' } },
        snapshot,
        token(4, '!'),
      );
    });
    act(() => frames.run());
    expect(commits()).toBe(before + 1);
    expect(result.current.text).toBe('The whole answer so far!');
    expect(result.current.outputTokens).toBe(10);
  });

  it('keeps the text on stop and on an error event; retry starts the request again', async () => {
    const transport = new FakeTransport();
    const frames = new ManualFrames();
    const { result } = setup({ transport, frames });
    const request = { block_type: 'ask_question' as const, input: 'Why?' };
    await act(() => result.current.start(request));
    act(() => transport.last.emit(startEvent(), token(2, 'Partial')));
    await act(() => result.current.stop());
    expect(transport.last.stopCalls).toBe(1);
    act(() => transport.last.emit(doneEvent(3, 'Partial', 'stopped')));
    act(() => frames.run());
    expect(result.current.status).toBe('done');
    expect(result.current.outcome).toBe('stopped');
    expect(result.current.text).toBe('Partial');
    expect(result.current.canRetry).toBe(true);

    act(() => result.current.retry());
    await act(async () => {});
    expect(transport.starts).toEqual([request, request]);
    expect(result.current.status).toBe('connecting');

    act(() =>
      transport.last.emit(startEvent(), token(2, 'Again'), {
        id: id(3),
        type: 'error',
        data: { code: 'provider_error', message: 'the model failed', status: 'failed', retryable: true },
      }),
    );
    act(() => frames.run());
    expect(result.current.status).toBe('error');
    expect(result.current.text).toBe('Again');
    expect(result.current.error).toMatchObject({ code: 'provider_error', message: 'the model failed' });
    expect(result.current.canContinue).toBe(false);
  });

  it('continues a stream whose connection was lost from the last event id', async () => {
    const transport = new FakeTransport();
    const frames = new ManualFrames();
    const { result } = setup({ transport, frames });
    await act(() => result.current.start({ block_type: 'ask_question', input: 'Why?' }));
    act(() => {
      transport.last.emit(startEvent(), token(2, 'Kept'));
      transport.last.delivery.fail({ source: 'transport', code: 'connection_lost', message: 'lost', retryable: true });
    });
    act(() => frames.run());
    expect(result.current.status).toBe('error');
    expect(result.current.canContinue).toBe(true);
    act(() => result.current.retry());
    expect(transport.resumes).toEqual([{ streamId: 's1', afterId: id(2) }]);
    act(() => transport.last.emit(token(2, 'Kept'), token(3, ' going'), doneEvent(4, 'Kept going')));
    act(() => frames.run());
    expect(result.current.text).toBe('Kept going');
    expect(result.current.status).toBe('done');
  });

  it('resumes on the new transport from the same cursor when the transport is switched', async () => {
    const sseTransport = new FakeTransport('sse');
    const wsTransport = new FakeTransport('websocket');
    const frames = new ManualFrames();
    let current: StreamTransport = sseTransport;
    const wrapper = ({ children }: { children: ReactNode }) => (
      <StreamTransportProvider transport={current}>{children}</StreamTransportProvider>
    );
    const { result, rerender } = renderHook(() => useAIStreaming({ frames }), { wrapper });
    await act(() => result.current.start({ block_type: 'ask_question', input: 'Why?' }));
    const first = sseTransport.last;
    act(() => first.emit(startEvent(), token(2, 'One'), token(3, ' two')));

    current = wsTransport;
    rerender();
    expect(first.closeCalls).toBe(1);
    expect(wsTransport.resumes).toEqual([{ streamId: 's1', afterId: id(3) }]);
    act(() => wsTransport.last.emit(token(3, ' two'), token(4, ' three')));
    act(() => frames.run());
    expect(result.current.text).toBe('One two three');
  });

  it('closes the connection and drops the pending frame on unmount', async () => {
    const transport = new FakeTransport();
    const frames = new ManualFrames();
    const { result, unmount } = setup({ transport, frames });
    await act(() => result.current.start({ block_type: 'ask_question', input: 'Why?' }));
    act(() => transport.last.emit(startEvent(), token(2, 'x')));
    expect(frames.pending).toBe(1);
    unmount();
    expect(transport.last.closeCalls).toBe(1);
    expect(frames.pending).toBe(0);
  });

  it('closes a real EventSource on unmount and after completion', async () => {
    const sources: FakeEventSource[] = [];
    class FakeEventSource extends EventTarget {
      readyState = 0;
      closed = false;
      constructor(readonly url: string) {
        super();
        sources.push(this);
      }
      close() {
        this.closed = true;
        this.readyState = 2;
      }
      emit(event: StreamEvent) {
        this.dispatchEvent(new MessageEvent(event.type, { data: JSON.stringify(event.data), lastEventId: event.id }));
      }
    }
    const transport = createSSETransport({ EventSource: FakeEventSource as unknown as typeof EventSource });
    const frames = new ManualFrames();
    const first = renderHook(() => useAIStreaming({ transport, frames }));
    act(() => first.result.current.join('s1'));
    expect(sources[0]?.url).toBe('/api/streams/s1/events');
    first.unmount();
    expect(sources[0]?.closed).toBe(true);

    const second = renderHook(() => useAIStreaming({ transport, frames }));
    act(() => second.result.current.join('s2'));
    const source = sources[1] as FakeEventSource;
    act(() => {
      source.emit(startEvent(1, 'ask_question', 's2'));
      source.emit(doneEvent(2, 'Done'));
    });
    expect(source.closed).toBe(true);
    act(() => frames.run());
    expect(second.result.current.text).toBe('Done');
  });
});

describe('useAIBlockStreaming', () => {
  it('gives the quiz questions and the diagram source', async () => {
    const transport = new FakeTransport();
    const frames = new ManualFrames();
    const quiz = renderHook(() => useAIBlockStreaming('quiz', { transport, frames }));
    await act(() => quiz.result.current.run('Rain', { num_questions: 2 }));
    expect(transport.starts.at(-1)).toEqual({ block_type: 'quiz', input: 'Rain', options: { num_questions: 2 } });
    const question = { question: 'Q1?', choices: ['a', 'b', 'c', 'd'], answer_index: 2, explanation: 'c it is' };
    act(() => transport.last.emit(startEvent(1, 'quiz'), { id: id(2), type: 'quiz.question', data: { index: 0, question } }));
    act(() => frames.run());
    expect(quiz.result.current.questions).toEqual([question]);

    const diagram = renderHook(() => useAIBlockStreaming('diagram', { transport, frames }));
    await act(() => diagram.result.current.run('Rain'));
    act(() =>
      transport.last.emit(
        startEvent(1, 'diagram'),
        { id: id(2), type: 'diagram.partial', data: { text: 'flowchart TD\n' } },
        { id: id(3), type: 'diagram.partial', data: { text: '  A --> B' } },
      ),
    );
    act(() => frames.run());
    expect(diagram.result.current.source).toBe('flowchart TD\n  A --> B');
  });

  it('needs a transport', () => {
    const Broken = () => {
      useAIStreaming();
      return null;
    };
    expect(() => render(<Broken />)).toThrow(/needs a transport/);
  });
});
