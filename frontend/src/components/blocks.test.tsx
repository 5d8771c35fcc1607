/**
 * The blocks with a fake transport: Markdown while streaming (mended, no raw
 * HTML, only http/https links), caret and live region, stop/retry, the quiz
 * flow with its score, and an invalid diagram shown as source.
 */
import { act, render, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import type { StreamEvent } from '../ai/events.ts';
import { StreamTransportProvider } from '../ai/streamHooks.ts';
import { FakeTransport, doneEvent, id, startEvent, token } from '../test/fakeTransport.ts';
import { AskQuestionBlock } from './AskQuestionBlock.tsx';
import { DiagramBlock } from './DiagramBlock.tsx';
import { QuizBlock } from './QuizBlock.tsx';
import { safeUrl } from './StreamingMarkdown.tsx';

vi.mock('./mermaidRender.ts', () => ({
  renderMermaid: vi.fn(async () => ({ ok: false, message: 'Parse error on line 2: expecting -->' })),
}));

function renderWith(ui: React.ReactElement) {
  const transport = new FakeTransport();
  const user = userEvent.setup();
  render(<StreamTransportProvider transport={transport}>{ui}</StreamTransportProvider>);
  return { transport, user };
}

describe('AskQuestionBlock', () => {
  it('renders streamed Markdown safely with a caret, then stops and retries', async () => {
    const { transport, user } = renderWith(<AskQuestionBlock topic="Photosynthesis" />);
    const input = screen.getByLabelText('Your question');
    await user.clear(input);
    await user.type(input, 'What is chlorophyll?');
    await user.click(screen.getByRole('button', { name: 'Ask' }));
    expect(transport.starts).toEqual([{ block_type: 'ask_question', input: 'What is chlorophyll?', options: { max_tokens: 160 } }]);

    act(() =>
      transport.last.emit(
        startEvent(),
        token(2, 'Chlorophyll is **green'),
        token(3, ' <img src=x onerror="window.__pwned=1"> [bad](javascript:alert(1)) [good](https://example.org/a)'),
      ),
    );
    const answer = await screen.findByTestId('answer');
    await waitFor(() => expect(answer.querySelector('strong')).toHaveTextContent('green')); // mended: `**green` is bold already
    // a log that screen readers do not read token by token (the page's announcer says the moments)
    expect(answer).toHaveAttribute('role', 'log');
    expect(answer).toHaveAttribute('aria-live', 'off');
    expect(answer).toHaveAttribute('aria-busy', 'true');
    expect(answer.querySelector('.markdown.streaming')).not.toBeNull();
    expect(answer.querySelector('img')).toBeNull();
    expect(answer).toHaveTextContent('<img src=x onerror="window.__pwned=1">'); // shown as text, never as HTML
    expect(within(answer).getByText('bad').closest('a')).toBeNull();
    expect(within(answer).getByText('good').closest('a')).toHaveAttribute('href', 'https://example.org/a');
    expect(screen.getByTestId('status')).toHaveTextContent('Streaming');
    expect(screen.getByTestId('count')).toHaveTextContent('2 tokens');

    await user.click(screen.getByRole('button', { name: 'Stop' }));
    expect(transport.last.stopCalls).toBe(1);
    act(() => transport.last.emit(doneEvent(4, 'x', 'stopped')));
    await waitFor(() => expect(screen.getByTestId('status')).toHaveTextContent('Stopped'));
    expect(answer).toHaveAttribute('aria-busy', 'false');
    expect(answer.querySelector('.markdown.streaming')).toBeNull();
    expect(answer).toHaveTextContent('Chlorophyll is green'); // kept

    await user.click(screen.getByRole('button', { name: 'Retry' }));
    expect(transport.starts).toHaveLength(2);
  });

  it('shows a refused start as an error', async () => {
    const transport = new FakeTransport();
    transport.start = async () => {
      const { StreamRequestError } = await import('../ai/transport.ts');
      throw new StreamRequestError({ source: 'request', code: 'input_too_long', message: 'at most 2000 characters', retryable: false });
    };
    const user = userEvent.setup();
    render(
      <StreamTransportProvider transport={transport}>
        <AskQuestionBlock topic="Photosynthesis" />
      </StreamTransportProvider>,
    );
    await user.click(screen.getByRole('button', { name: 'Ask' }));
    expect(await screen.findByTestId('stream-error')).toHaveTextContent('at most 2000 characters');
  });
});

describe('safeUrl', () => {
  it.each([
    ['https://example.org/x?y=1', 'https://example.org/x?y=1'],
    ['http://example.org', 'http://example.org'],
    ['javascript:alert(1)', ''],
    [' JaVaScRiPt:alert(1)', ''],
    ['data:text/html,<script>1</script>', ''],
    ['vbscript:x', ''],
    ['/relative', ''],
    ['//evil.example/x', ''],
  ])('%s → %s', (url, expected) => {
    expect(safeUrl(url)).toBe(expected);
  });
});

describe('QuizBlock', () => {
  // what a learner's stream carries: the question and its choices, never the answer
  const question = (n: number) => ({ question: `Question ${n}?`, choices: ['Alpha', 'Beta', 'Gamma', 'Delta'] });

  it('shows questions one by one, asks the server for each answer and gives a score', async () => {
    const { transport, user } = renderWith(<QuizBlock topic="Photosynthesis" />);
    await user.click(screen.getByRole('button', { name: 'Make quiz' }));
    expect(transport.starts[0]).toEqual({ block_type: 'quiz', input: 'Photosynthesis', options: { num_questions: 3 } });

    act(() => transport.last.emit(startEvent(1, 'quiz'), { id: id(2), type: 'quiz.question', data: { index: 0, question: question(1) } }));
    expect(await screen.findAllByTestId('quiz-question')).toHaveLength(1);
    expect(screen.getByText(/Writing question 2/)).toBeInTheDocument();

    // keyboard: tab to the second choice and press Enter (the fake server's answer to question i is i % 4)
    const first = screen.getAllByTestId('quiz-question')[0] as HTMLElement;
    within(first).getByRole('button', { name: /Alpha/ }).focus();
    await user.tab();
    await user.keyboard('{Enter}');
    await waitFor(() => expect(within(first).getByTestId('feedback')).toHaveTextContent('Not quite: the answer is A. Because 0.'));
    expect(transport.answers).toEqual([{ streamId: 's1', index: 0, choice: 1 }]);

    const events: StreamEvent[] = [
      { id: id(3), type: 'quiz.question', data: { index: 1, question: question(2) } },
      doneEvent(4, '{}', 'complete', 'quiz'),
    ];
    act(() => transport.last.emit(...events));
    await waitFor(() => expect(screen.getAllByTestId('quiz-question')).toHaveLength(2));
    const cards = screen.getAllByTestId('quiz-question');
    await user.click(within(cards[1] as HTMLElement).getByRole('button', { name: /Beta/ }));
    await waitFor(() => expect(within(cards[1] as HTMLElement).getByTestId('feedback')).toHaveTextContent('Correct. Because 1.'));
    expect(within(cards[1] as HTMLElement).getByRole('button', { name: /Alpha/ })).toBeDisabled();
    // a second click asks nothing: one answer per question
    await user.click(within(cards[1] as HTMLElement).getByRole('button', { name: /Gamma/ }));
    expect(transport.answers).toHaveLength(2);
    expect(screen.getByTestId('score')).toHaveTextContent('Your score: 1 / 2');
  });

  it("a teacher's quiz with its answer key marks answers without asking", async () => {
    const { transport, user } = renderWith(<QuizBlock topic="Photosynthesis" />);
    await user.click(screen.getByRole('button', { name: 'Make quiz' }));
    const keyed = { ...question(1), answer_index: 2, explanation: 'Because of reason 1.' };
    act(() => transport.last.emit(startEvent(1, 'quiz'), { id: id(2), type: 'quiz.question', data: { index: 0, question: keyed } }));
    const card = (await screen.findAllByTestId('quiz-question'))[0] as HTMLElement;
    await user.click(within(card).getByRole('button', { name: /Gamma/ }));
    expect(within(card).getByTestId('feedback')).toHaveTextContent('Correct. Because of reason 1.');
    expect(transport.answers).toEqual([]);
  });
});

describe('DiagramBlock', () => {
  it('streams the source, then shows it with a clear message when it is not valid Mermaid', async () => {
    const { transport, user } = renderWith(<DiagramBlock topic="Photosynthesis" />);
    await user.click(screen.getByRole('button', { name: 'Draw diagram' }));
    act(() => transport.last.emit(startEvent(1, 'diagram'), { id: id(2), type: 'diagram.partial', data: { text: 'flowchart TD\n  A -- B' } }));
    await waitFor(() => expect(screen.getByTestId('diagram-source')).toHaveTextContent('flowchart TD A -- B'));
    act(() =>
      transport.last.emit({
        id: id(3),
        type: 'done',
        data: {
          status: 'complete',
          reason: 'finished',
          usage: { input_tokens: 1, output_tokens: 1 },
          result: { block_type: 'diagram', text: 'flowchart TD\n  A -- B', diagram: { valid: false, errors: ['line 2: no arrow'] } },
        },
      }),
    );
    const invalid = await screen.findByTestId('diagram-invalid');
    expect(invalid).toHaveTextContent('not valid Mermaid');
    expect(invalid).toHaveTextContent('Parse error on line 2');
    expect(invalid).toHaveTextContent('line 2: no arrow');
    expect(screen.getByTestId('diagram-source')).toHaveTextContent('flowchart TD A -- B');
  });
});
