/**
 * Accessible streaming (issue 17) over a fake transport: the announcement changes once per moment
 * (started, queued, question ready, done, stopped, failed), never per token, and the page's one
 * announcer says each moment once; the output region is a log, busy while streaming; Escape inside a
 * block stops its stream (and only its own), and focus stays in the block when Stop goes away.
 */
import { act, render, renderHook, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import type { ReactNode } from 'react';
import { describe, expect, it } from 'vitest';
import { AskQuestionBlock } from '../components/AskQuestionBlock.tsx';
import { ExplainELI10Block } from '../components/ExplainELI10Block.tsx';
import { AIBlocksProvider } from '../components/AIBlocksProvider.tsx';
import { FakeTransport, ManualFrames, doneEvent, id, startEvent, token } from '../test/fakeTransport.ts';
import { StreamAnnouncer } from './announcer.ts';
import type { QuizQuestion, StreamEvent } from './events.ts';
import { StreamTransportProvider, useAIBlockStreaming, type AIBlockStreaming } from './streamHooks.ts';

const announcerWrapper = ({ children }: { children: ReactNode }) => <StreamAnnouncer>{children}</StreamAnnouncer>;

/** What the region holds: one paragraph per announcement. */
function said(): string[] {
  return [...screen.getByTestId('stream-announcer').querySelectorAll('p')].map((p) => p.textContent ?? '');
}

/** The hook under a StreamAnnouncer, recording each distinct announcement it renders. */
function setup(blockType: Parameters<typeof useAIBlockStreaming>[0]) {
  const transport = new FakeTransport();
  const frames = new ManualFrames();
  const seen: string[] = [];
  const outputs: AIBlockStreaming['outputProps'][] = [];
  let renders = 0;
  const hook = renderHook(
    () => {
      const stream = useAIBlockStreaming(blockType, { transport, frames });
      renders += 1;
      if (seen.at(-1) !== stream.announcement) seen.push(stream.announcement);
      if (outputs.at(-1) !== stream.outputProps) outputs.push(stream.outputProps);
      return stream;
    },
    { wrapper: announcerWrapper },
  );
  return { ...hook, transport, frames, seen, outputs, renders: () => renders };
}

const question = (n: number): QuizQuestion => ({
  question: `Question ${n}?`,
  choices: ['Alpha', 'Beta', 'Gamma', 'Delta'],
  answer_index: n % 4,
  explanation: `Because ${n}.`,
});

describe('the announcement', () => {
  it('changes once per moment however many tokens stream, and the announcer says each once', async () => {
    const { result, transport, frames, seen, renders } = setup('ask_question');
    expect(result.current.announcement).toBe('');
    expect(result.current.moment).toBeNull();
    await act(() => result.current.run('Why?'));
    act(() => transport.last.emit(startEvent(), { id: id(2), type: 'queued', data: { position: 2 } }));
    act(() => frames.run());
    act(() => transport.last.emit({ id: id(3), type: 'queued', data: { position: 1 } }));
    act(() => frames.run());
    const before = renders();
    // 600 tokens over 60 frames: 60 commits, no new moment
    for (let frame = 0; frame < 60; frame += 1) {
      act(() => {
        for (let i = 0; i < 10; i += 1) transport.last.emit(token(4 + frame * 10 + i, 'w '));
      });
      act(() => frames.run());
    }
    expect(renders() - before).toBeGreaterThanOrEqual(60);
    const streamingMoment = result.current.moment;
    act(() => transport.last.emit(token(700, 'w '), token(701, 'w ')));
    act(() => frames.run());
    expect(result.current.moment).toBe(streamingMoment); // the same object while the moment lasts
    act(() => transport.last.emit(doneEvent(702, '')));
    act(() => frames.run());

    const expected = [
      '',
      'Ask a question: started.',
      'Ask a question: waiting for the model, number 2 in the queue.',
      'Ask a question: waiting for the model, number 1 in the queue.',
      'Ask a question: started.', // its turn: the model is writing
      'Ask a question: done.',
    ];
    expect(seen).toEqual(expected);
    expect(said()).toEqual(expected.slice(-3)); // the region keeps the last three, each said once
  });

  it('says each quiz question ready with the number asked for, then done', async () => {
    const { result, transport, frames, seen } = setup('quiz');
    await act(() => result.current.run('Leaves', { num_questions: 3 }));
    act(() => transport.last.emit(startEvent(1, 'quiz')));
    act(() => frames.run());
    for (let i = 0; i < 3; i += 1) {
      act(() => transport.last.emit({ id: id(2 + i), type: 'quiz.question', data: { index: i, question: question(i) } }));
      act(() => frames.run());
      act(() => frames.run()); // an empty frame changes nothing
    }
    act(() => transport.last.emit(doneEvent(5, '{}', 'complete', 'quiz')));
    act(() => frames.run());
    expect(seen).toEqual([
      '',
      'Quiz: started.',
      'Quiz: question 1 of 3 ready.',
      'Quiz: question 2 of 3 ready.',
      'Quiz: question 3 of 3 ready.',
      'Quiz: done, 3 questions.',
    ]);
  });

  it('says stopped, and a failure with its message', async () => {
    const { result, transport, frames, seen } = setup('explain_eli10');
    await act(() => result.current.run('Leaves'));
    act(() => transport.last.emit(startEvent(1, 'explain_eli10'), token(2, 'Plants')));
    act(() => frames.run());
    act(() => transport.last.emit(doneEvent(3, 'Plants', 'stopped', 'explain_eli10')));
    act(() => frames.run());
    await act(async () => result.current.retry());
    const failure: StreamEvent = {
      id: id(2),
      type: 'error',
      data: { code: 'provider_error', message: 'the model is unavailable', status: 'failed', retryable: true },
    };
    act(() => transport.last.emit(startEvent(1, 'explain_eli10'), failure));
    act(() => frames.run());
    expect(seen).toEqual([
      '',
      "Explain like I'm 10: started.",
      "Explain like I'm 10: stopped. The text so far is kept.",
      "Explain like I'm 10: started.",
      "Explain like I'm 10: failed: the model is unavailable",
    ]);
    expect(said().at(-1)).toBe("Explain like I'm 10: failed: the model is unavailable");
  });
});

describe('the output region', () => {
  it('is a log that is not live, busy while the stream runs, the same props across tokens', async () => {
    const { result, transport, frames, outputs } = setup('ask_question');
    expect(result.current.outputProps).toEqual({ role: 'log', 'aria-live': 'off', 'aria-busy': false });
    await act(() => result.current.run('Why?'));
    expect(result.current.outputProps).toEqual({ role: 'log', 'aria-live': 'off', 'aria-busy': true });
    for (let seq = 1; seq < 50; seq += 1) {
      act(() => transport.last.emit(seq === 1 ? startEvent() : token(seq, 'x')));
      act(() => frames.run());
    }
    expect(result.current.outputProps['aria-busy']).toBe(true);
    act(() => transport.last.emit(doneEvent(50, '')));
    act(() => frames.run());
    expect(result.current.outputProps).toEqual({ role: 'log', 'aria-live': 'off', 'aria-busy': false });
    expect(outputs).toHaveLength(3); // idle, running, done: one object each
  });

  it('is the answer element of a block, and the page has one announcer under nested providers', () => {
    const transport = new FakeTransport();
    render(
      <StreamAnnouncer>
        <StreamTransportProvider transport={transport}>
          <AIBlocksProvider>
            <AskQuestionBlock topic="Photosynthesis" />
          </AIBlocksProvider>
        </StreamTransportProvider>
      </StreamAnnouncer>,
    );
    expect(screen.getAllByTestId('stream-announcer')).toHaveLength(1);
    const region = screen.getByTestId('stream-announcer');
    expect(region).toHaveAttribute('aria-live', 'polite');
    expect(region).toHaveAttribute('aria-atomic', 'false');
    expect(region).toHaveClass('aib-announcer');
    const answer = screen.getByTestId('answer');
    expect(answer).toHaveAttribute('role', 'log');
    expect(answer).toHaveAttribute('aria-live', 'off');
    expect(answer).toHaveAccessibleName('Ask a question: answer');
  });
});

describe('Escape', () => {
  function page() {
    const transport = new FakeTransport();
    const user = userEvent.setup();
    render(
      <StreamTransportProvider transport={transport}>
        <StreamAnnouncer>
          <AskQuestionBlock topic="Photosynthesis" />
          <ExplainELI10Block topic="Photosynthesis" />
        </StreamAnnouncer>
      </StreamTransportProvider>,
    );
    const ask = screen.getByRole('region', { name: 'Ask a question' });
    const eli10 = screen.getByRole('region', { name: "Explain like I'm 10" });
    return { transport, user, ask, eli10 };
  }

  it('stops the streaming block that has focus, as its Stop button does, and only that one', async () => {
    const { transport, user, ask, eli10 } = page();
    await user.click(within(ask).getByRole('button', { name: 'Ask' }));
    const stream = transport.last;
    act(() => stream.emit(startEvent(), token(2, 'Leaves')));
    await screen.findByText('Leaves');

    // Escape in another block (idle) does nothing to this one
    within(eli10).getByRole('textbox').focus();
    await user.keyboard('{Escape}');
    expect(stream.stopCalls).toBe(0);

    within(ask).getByRole('textbox').focus();
    await user.keyboard('{Escape}');
    expect(stream.stopCalls).toBe(1);
    act(() => stream.emit(doneEvent(3, 'Leaves', 'stopped')));
    await waitFor(() => expect(within(ask).getByTestId('status')).toHaveTextContent('Stopped'));
    expect(within(ask).getByRole('textbox')).toHaveFocus(); // focus stays where it was
    await user.keyboard('{Escape}'); // nothing runs: nothing to stop
    expect(stream.stopCalls).toBe(1);
    expect(said()).toEqual(['Ask a question: started.', 'Ask a question: stopped. The text so far is kept.']);
  });

  it('moves focus from a Stop button that goes away to Retry', async () => {
    const { transport, user, ask } = page();
    await user.click(within(ask).getByRole('button', { name: 'Ask' }));
    act(() => transport.last.emit(startEvent(), token(2, 'Leaves')));
    const stop = await within(ask).findByRole('button', { name: 'Stop' });
    expect(stop).toHaveAttribute('aria-keyshortcuts', 'Escape');
    stop.focus();
    await user.keyboard('{Escape}');
    expect(transport.last.stopCalls).toBe(1);
    act(() => transport.last.emit(doneEvent(3, 'Leaves', 'stopped')));
    expect(await within(ask).findByRole('button', { name: 'Retry' })).toHaveFocus();
  });
});
