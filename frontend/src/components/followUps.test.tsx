/**
 * Follow-ups (issue 17) over a fake transport: `followUp` sends the finished turn's stream id and the
 * kind (or the learner's words) through the injected transport, `thread` keeps the earlier turns and
 * their text, a new topic starts a new thread; the blocks offer their follow-ups only once a turn has
 * finished, show the earlier turns above the new one, number a quiz's new question on, keep an earlier
 * diagram drawn, and a refused follow-up (409 parent_running) is a clear message with Retry.
 */
import { act, render, renderHook, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import type { ReactNode } from 'react';
import { describe, expect, it, vi } from 'vitest';
import { StreamAnnouncer } from '../ai/announcer.ts';
import type { QuizQuestion, StreamEvent } from '../ai/events.ts';
import { StreamTransportProvider, useAIBlockStreaming } from '../ai/streamHooks.ts';
import { StreamRequestError } from '../ai/transport.ts';
import { FakeTransport, ManualFrames, doneEvent, id, startEvent, token } from '../test/fakeTransport.ts';
import { AskQuestionBlock } from './AskQuestionBlock.tsx';
import { DiagramBlock } from './DiagramBlock.tsx';
import { QuizBlock } from './QuizBlock.tsx';

vi.mock('./mermaidRender.ts', () => ({
  renderMermaid: vi.fn(async (source: string) => {
    const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.textContent = source;
    return { ok: true, svg };
  }),
}));

function renderWith(ui: ReactNode) {
  const transport = new FakeTransport();
  const user = userEvent.setup();
  render(
    <StreamTransportProvider transport={transport}>
      <StreamAnnouncer>{ui}</StreamAnnouncer>
    </StreamTransportProvider>,
  );
  return { transport, user };
}

function said(): string[] {
  return [...screen.getByTestId('stream-announcer').querySelectorAll('p')].map((p) => p.textContent ?? '');
}

const question = (n: number): QuizQuestion => ({
  question: `Question ${n}?`,
  choices: ['Alpha', 'Beta', 'Gamma', 'Delta'],
  answer_index: n % 4,
  explanation: `Because ${n}.`,
});

describe('useAIBlockStreaming: followUp and thread', () => {
  it('sends the finished turn as parent with the kind, keeps it in the thread, and a new topic starts a new thread', async () => {
    const transport = new FakeTransport();
    const frames = new ManualFrames();
    const { result } = renderHook(() => useAIBlockStreaming('explain_eli10', { transport, frames }));
    expect(result.current.thread).toEqual([]);
    expect(result.current.canFollowUp).toBe(false);

    await act(() => result.current.run('Volcanoes', { max_tokens: 120 }));
    expect(result.current.asked).toEqual({ input: 'Volcanoes', parentStreamId: null, followUp: null });
    act(() => transport.last.emit(startEvent(1, 'explain_eli10'), token(2, 'Hot rock')));
    act(() => frames.run());
    expect(result.current.canFollowUp).toBe(false); // still streaming: the server would refuse
    await act(() => result.current.followUp('simpler'));
    expect(transport.starts).toHaveLength(1); // not asked
    act(() => transport.last.emit(doneEvent(3, 'Hot rock', 'complete', 'explain_eli10')));
    act(() => frames.run());
    expect(result.current.canFollowUp).toBe(true);

    await act(() => result.current.followUp('simpler'));
    expect(transport.starts[1]).toEqual({
      block_type: 'explain_eli10',
      input: '',
      parent_stream_id: 's1',
      follow_up: 'simpler',
      options: { max_tokens: 120 }, // the thread's length carries on
    });
    expect(result.current.status).toBe('connecting');
    expect(result.current.text).toBe('');
    expect(result.current.thread).toHaveLength(1);
    expect(result.current.thread[0]).toMatchObject({ streamId: 's1', input: 'Volcanoes', followUp: null, text: 'Hot rock', outcome: 'complete' });
    expect(result.current.asked).toEqual({ input: '', parentStreamId: 's1', followUp: 'simpler' });

    act(() => transport.last.emit(startEvent(1, 'explain_eli10', 's2'), token(2, 'Melted stone'), doneEvent(3, 'Melted stone', 'complete', 'explain_eli10')));
    act(() => frames.run());
    // the learner's own words: no kind, their question as input
    await act(() => result.current.followUp(null, '  Why is it hot?  '));
    expect(transport.starts[2]).toMatchObject({ input: 'Why is it hot?', parent_stream_id: 's2', follow_up: null });
    expect(result.current.thread.map((t) => [t.streamId, t.text])).toEqual([
      ['s1', 'Hot rock'],
      ['s2', 'Melted stone'],
    ]);

    await act(() => result.current.run('Glaciers'));
    expect(transport.starts[3]).toEqual({ block_type: 'explain_eli10', input: 'Glaciers' });
    expect(result.current.thread).toEqual([]);
  });

  it('a stopped turn can be followed up; retrying a refused follow-up keeps the thread', async () => {
    const transport = new FakeTransport();
    const frames = new ManualFrames();
    const { result } = renderHook(() => useAIBlockStreaming('ask_question', { transport, frames }));
    await act(() => result.current.run('What is rain?'));
    act(() => transport.last.emit(startEvent(), token(2, 'Water'), doneEvent(3, 'Water', 'stopped')));
    act(() => frames.run());
    expect(result.current.canFollowUp).toBe(true);

    const realStart = transport.start.bind(transport);
    transport.start = async (request) => {
      transport.starts.push(request);
      throw new StreamRequestError({
        source: 'request',
        code: 'parent_running',
        message: 'the turn before is still streaming; stop it or wait for it to end',
        retryable: false,
        httpStatus: 409,
      });
    };
    await act(() => result.current.followUp('why'));
    act(() => frames.run());
    expect(result.current.status).toBe('error');
    expect(result.current.error).toMatchObject({ code: 'parent_running', httpStatus: 409 });
    expect(result.current.canFollowUp).toBe(false);
    expect(result.current.canRetry).toBe(true);
    expect(result.current.thread.map((t) => [t.streamId, t.text, t.outcome])).toEqual([['s1', 'Water', 'stopped']]);

    transport.start = realStart;
    act(() => result.current.retry());
    await waitFor(() => expect(transport.starts).toHaveLength(3));
    expect(transport.starts[2]).toMatchObject({ parent_stream_id: 's1', follow_up: 'why' });
    expect(result.current.thread).toHaveLength(1); // the same thread, not the turn twice
  });
});

describe('TextAnswerBlock follow-ups', () => {
  it('offers Simpler, Another example, Why? and own words only once the answer is finished, and keeps the earlier turn', async () => {
    const { transport, user } = renderWith(<AskQuestionBlock topic="Photosynthesis" />);
    await user.click(screen.getByRole('button', { name: 'Ask' }));
    act(() => transport.last.emit(startEvent(), token(2, 'Light makes sugar.')));
    await waitFor(() => expect(screen.getByTestId('answer')).toHaveTextContent('Light makes sugar.'));
    expect(screen.queryByRole('button', { name: 'Simpler' })).toBeNull(); // not while streaming

    act(() => transport.last.emit(doneEvent(3, 'Light makes sugar.')));
    const group = await screen.findByRole('group', { name: 'Follow up on Ask a question' });
    expect(within(group).getAllByRole('button').map((b) => b.textContent)).toEqual([
      'Simpler',
      'Another example',
      'Why?',
      'Follow up in your own words',
    ]);

    await user.click(within(group).getByRole('button', { name: 'Simpler' }));
    expect(transport.starts[1]).toMatchObject({ block_type: 'ask_question', parent_stream_id: 's1', follow_up: 'simpler' });
    expect(screen.queryByRole('group', { name: /Follow up on/ })).toBeNull(); // gone while the follow-up streams
    await waitFor(() => expect(screen.getByRole('button', { name: 'Stop' })).toHaveFocus()); // the keyboard stays in the block

    const earlier = screen.getByTestId('thread-turn');
    expect(earlier).toHaveTextContent('How does photosynthesis turn light into food?');
    expect(earlier).toHaveTextContent('Light makes sugar.');
    expect(screen.getByTestId('turn-asked')).toHaveTextContent('Simpler');
    act(() => transport.last.emit(startEvent(1, 'ask_question', 's2'), token(2, 'Plants eat light.')));
    await waitFor(() => expect(screen.getByTestId('answer')).toHaveTextContent('Plants eat light.'));
    expect(screen.getByTestId('answer')).not.toHaveTextContent('Light makes sugar.');
    act(() => transport.last.emit(doneEvent(3, 'Plants eat light.')));
    await screen.findByRole('group', { name: 'Follow up on Ask a question' });
    await waitFor(() => expect(said()).toEqual(expect.arrayContaining(['Ask a question (Simpler): started.', 'Ask a question (Simpler): done.'])));

    // the learner's own words
    await user.click(screen.getByRole('button', { name: 'Follow up in your own words' }));
    const words = screen.getByLabelText('Your follow-up question');
    expect(words).toHaveFocus();
    await user.type(words, 'Do plants sleep?');
    await user.click(screen.getByRole('button', { name: 'Send' }));
    expect(transport.starts[2]).toMatchObject({ input: 'Do plants sleep?', parent_stream_id: 's2', follow_up: null });
    expect(screen.getAllByTestId('thread-turn')).toHaveLength(2);
    expect(screen.getByTestId('turn-asked')).toHaveTextContent('“Do plants sleep?”');
  });

  it('shows a refused follow-up (409 parent_running) as a clear message, with Retry', async () => {
    const { transport, user } = renderWith(<AskQuestionBlock topic="Photosynthesis" />);
    await user.click(screen.getByRole('button', { name: 'Ask' }));
    act(() => transport.last.emit(startEvent(), token(2, 'Green.'), doneEvent(3, 'Green.')));
    const realStart = transport.start.bind(transport);
    transport.start = async (request) => {
      transport.starts.push(request);
      throw new StreamRequestError({ source: 'request', code: 'parent_running', message: 'the turn before is still streaming', retryable: false, httpStatus: 409 });
    };
    await user.click(await screen.findByRole('button', { name: 'Why?' }));
    const error = await screen.findByTestId('stream-error');
    expect(error).toHaveTextContent('The answer before this one is still being written');
    expect(error).toHaveTextContent('(parent_running)');
    expect(screen.getByTestId('thread-turn')).toHaveTextContent('Green.'); // the earlier answer stays
    transport.start = realStart;
    await user.click(screen.getByRole('button', { name: 'Retry' }));
    expect(transport.starts.at(-1)).toMatchObject({ parent_stream_id: 's1', follow_up: 'why' });
    await waitFor(() => expect(screen.queryByTestId('stream-error')).toBeNull());
  });

  it('says when an answer is read from a shared generation', async () => {
    const { transport, user } = renderWith(<AskQuestionBlock topic="Photosynthesis" />);
    await user.click(screen.getByRole('button', { name: 'Ask' }));
    const start = startEvent() as Extract<StreamEvent, { type: 'start' }>;
    act(() => transport.last.emit({ ...start, data: { ...start.data, shared: true, cached: false } }));
    expect(await screen.findByTestId('shared-note')).toHaveTextContent('shared with your class');
  });
});

describe('QuizBlock: Another question', () => {
  it('appends the new question numbered on, keeping the answers given', async () => {
    const { transport, user } = renderWith(<QuizBlock topic="Planets" />);
    await user.click(screen.getByRole('button', { name: 'Make quiz' }));
    const events: StreamEvent[] = [startEvent(1, 'quiz')];
    for (let i = 0; i < 3; i += 1) events.push({ id: id(2 + i), type: 'quiz.question', data: { index: i, question: question(i + 1) } });
    act(() => transport.last.emit(...events));
    expect(screen.queryByRole('button', { name: 'Another question' })).toBeNull();
    act(() => transport.last.emit(doneEvent(5, '{}', 'complete', 'quiz')));
    const first = (await screen.findAllByTestId('quiz-question'))[0] as HTMLElement;
    await user.click(within(first).getByRole('button', { name: /Beta/ }));

    await user.click(screen.getByRole('button', { name: 'Another question' }));
    expect(transport.starts[1]).toEqual({ block_type: 'quiz', input: '', parent_stream_id: 's1', follow_up: 'another_question' });
    act(() => transport.last.emit(startEvent(1, 'quiz', 's2'), { id: id(2), type: 'quiz.question', data: { index: 0, question: question(4) } }));
    await waitFor(() => expect(screen.getAllByTestId('quiz-question')).toHaveLength(4));
    const cards = screen.getAllByTestId('quiz-question');
    expect(cards[3]).toHaveTextContent('4. Question 4?');
    expect(within(cards[0] as HTMLElement).getByTestId('feedback')).toHaveTextContent('Correct.'); // kept
    act(() => transport.last.emit(doneEvent(3, '{}', 'complete', 'quiz')));
    await waitFor(() => expect(screen.getByTestId('status')).toHaveTextContent('Done'));
    expect(screen.getByTestId('count')).toHaveTextContent('4 questions');
    await waitFor(() =>
      expect(said()).toEqual(expect.arrayContaining(['Quiz (Another question): question 4 ready.', 'Quiz (Another question): done, 4 questions.'])),
    );
  });
});

describe('DiagramBlock: More detail', () => {
  it('draws the new diagram below, the earlier one kept drawn in the thread', async () => {
    const { transport, user } = renderWith(<DiagramBlock topic="Rain" />);
    await user.click(screen.getByRole('button', { name: 'Draw diagram' }));
    const done = (text: string): StreamEvent => ({
      id: id(3),
      type: 'done',
      data: { status: 'complete', reason: 'finished', usage: { input_tokens: 1, output_tokens: 1 }, result: { block_type: 'diagram', text, diagram: { valid: true, errors: [] } } },
    });
    act(() => transport.last.emit(startEvent(1, 'diagram'), { id: id(2), type: 'diagram.partial', data: { text: 'flowchart TD\n A --> B' } }, done('flowchart TD\n A --> B')));
    expect(await screen.findByTestId('diagram')).toHaveTextContent('A --> B');
    await user.click(screen.getByRole('button', { name: 'More detail' }));
    expect(transport.starts[1]).toMatchObject({ block_type: 'diagram', parent_stream_id: 's1', follow_up: 'more_detail' });
    expect(screen.getByTestId('thread-diagram')).toHaveTextContent('A --> B');
    act(() => transport.last.emit(startEvent(1, 'diagram', 's2'), { id: id(2), type: 'diagram.partial', data: { text: 'flowchart TD\n A --> B --> C' } }, done('flowchart TD\n A --> B --> C')));
    await waitFor(() => expect(screen.getByTestId('diagram')).toHaveTextContent('A --> B --> C'));
    expect(screen.getByTestId('thread-diagram')).toHaveTextContent('A --> B'); // the earlier one, still drawn
    expect(screen.getByTestId('thread-turn')).toHaveTextContent('Rain');
  });
});
