import { useEffect, useId, useState, type FormEvent } from 'react';
import type { QuizAnswer, QuizItem } from '../ai/events.ts';
import { StreamRequestError } from '../ai/transport.ts';
import { useAIBlockStreaming } from '../ai/streamHooks.ts';
import { StreamMessages, StreamStatusBar } from './StreamStatusBar.tsx';
import type { BlockProps } from './TextAnswerBlock.tsx';
import { FollowUps } from './FollowUps.tsx';

const LETTERS = ['A', 'B', 'C', 'D'];

/** A learner's answer to one question: the choice, then the server's verdict (or why there is none). */
interface Answer {
  choice: number;
  verdict: QuizAnswer | null;
  error: string | null;
}

interface CardProps {
  index: number;
  question: QuizItem;
  answer: Answer | undefined;
  onPick(choice: number): void;
}

/**
 * One question. The stream carries the question and its choices only: the answer and the
 * explanation come from the server once the learner has picked (`answer()`), so a learner
 * cannot read them in the page's events first. A teacher's stream with the answer key
 * (`options.answer_key`) has them already and needs no request.
 */
function QuestionCard({ index, question, answer, onPick }: CardProps) {
  const headingId = useId();
  const picked = answer?.choice;
  const answered = picked !== undefined;
  const rightIndex = answer?.verdict?.answer_index ?? null;
  const correct = answer?.verdict?.correct === true;
  return (
    <li className="quiz-question" aria-labelledby={headingId} data-testid="quiz-question">
      <h3 id={headingId}>
        <span className="quiz-number">{index + 1}.</span> {question.question}
      </h3>
      <div className="choices" role="group" aria-label={`Choices for question ${index + 1}`}>
        {question.choices.map((choice, i) => {
          const state = rightIndex === null ? (i === picked ? 'picked' : '') : i === rightIndex ? 'right' : i === picked ? 'wrong' : 'other';
          return (
            <button
              key={i}
              type="button"
              className={`choice ${state}`}
              disabled={answered && !answer?.error}
              aria-pressed={picked === i}
              onClick={() => onPick(i)}
            >
              <span className="choice-letter">{LETTERS[i]}</span> {choice}
            </button>
          );
        })}
      </div>
      <div className="feedback" aria-live="polite">
        {answer?.verdict ? (
          <p className={correct ? 'right' : 'wrong'} data-testid="feedback">
            <strong>{correct ? 'Correct.' : `Not quite: the answer is ${LETTERS[answer.verdict.answer_index]}.`}</strong>{' '}
            {answer.verdict.explanation}
          </p>
        ) : answer?.error ? (
          <p className="wrong" data-testid="feedback">
            Could not check this answer: {answer.error}
          </p>
        ) : answered ? (
          <p data-testid="feedback-pending">Checking…</p>
        ) : null}
      </div>
    </li>
  );
}

/** A question of the thread: the stream it came in and its index there (what an answer names). */
interface Entry {
  streamId: string;
  index: number;
  question: QuizItem;
}

const entryKey = (entry: Entry) => `${entry.streamId}:${entry.index}`;

export function QuizBlock({ topic, join }: BlockProps) {
  const stream = useAIBlockStreaming('quiz');
  const [input, setInput] = useState(topic);
  const [count, setCount] = useState(3);
  const [answers, setAnswers] = useState<Record<string, Answer>>({});
  const inputId = useId();
  const countId = useId();
  const titleId = useId();
  const { running } = stream;

  const { join: follow, streamId } = stream;
  useEffect(() => {
    if (join) follow(join.streamId);
  }, [join, follow]);
  // A new quiz starts with no answers; "Another question" keeps them (its questions number on).
  const quizId = stream.thread[0]?.streamId ?? streamId;
  useEffect(() => setAnswers({}), [quizId]);

  const submit = (event: FormEvent) => {
    event.preventDefault();
    const text = input.trim();
    if (text) {
      setAnswers({});
      void stream.run(text, { num_questions: count });
    }
  };

  // every question of the thread, with the stream and index the server knows it by
  const questions: Entry[] = [
    ...stream.thread.flatMap((turn) => turn.questions.map((question, index) => ({ streamId: turn.streamId, index, question }))),
    ...(streamId === null ? [] : stream.questions.flatMap((question, index) => (question ? [{ streamId, index, question }] : []))),
  ];
  const verdicts = Object.values(answers).flatMap((a) => (a.verdict ? [a.verdict] : []));
  const answered = verdicts.length;
  const score = verdicts.filter((v) => v.correct).length;
  const finished = stream.status === 'done' && questions.length > 0 && answered === questions.length;

  const pick = (entry: Entry, choice: number) => {
    const key = entryKey(entry);
    if (answers[key] && !answers[key].error) return; // one answer per question (a failed check may be tried again)
    const known = entry.question.answer_index;
    if (known != null) {
      // a teacher's quiz carries its answer key: nothing to ask
      const verdict = { index: entry.index, choice, correct: choice === known, answer_index: known, explanation: entry.question.explanation ?? '' };
      setAnswers((a) => ({ ...a, [key]: { choice, verdict, error: null } }));
      return;
    }
    setAnswers((a) => ({ ...a, [key]: { choice, verdict: null, error: null } }));
    stream.answer(entry.streamId, entry.index, choice).then(
      (verdict) => setAnswers((a) => ({ ...a, [key]: { choice, verdict, error: null } })),
      (error: unknown) => {
        const message = error instanceof StreamRequestError ? error.failure.message : String(error);
        setAnswers((a) => ({ ...a, [key]: { choice, verdict: null, error: message } }));
      },
    );
  };

  return (
    <section className="aib-block" aria-labelledby={titleId} data-block="quiz" data-status={stream.status} {...stream.blockProps}>
      <h2 id={titleId}>Quiz</h2>
      <p className="block-description">Questions arrive one by one; pick an answer to see whether it is right and why.</p>
      <form className="ask-form" onSubmit={submit}>
        <label htmlFor={inputId}>Topic</label>
        <div className="input-row">
          <input id={inputId} value={input} onChange={(e) => setInput(e.target.value)} maxLength={2000} required />
          <label htmlFor={countId} className="visually-hidden">
            Number of questions
          </label>
          <select id={countId} value={count} onChange={(e) => setCount(Number(e.target.value))}>
            {[1, 2, 3, 4, 5].map((n) => (
              <option key={n} value={n}>
                {n} {n === 1 ? 'question' : 'questions'}
              </option>
            ))}
          </select>
          <button type="submit" disabled={running || !input.trim()}>
            Make quiz
          </button>
        </div>
      </form>
      <StreamStatusBar stream={stream} countLabel={questions.length === 1 ? 'question' : 'questions'} count={questions.length} />
      {stream.status === 'idle' ? <p className="placeholder">Your questions appear here.</p> : null}
      <div className="quiz-output" {...stream.outputProps} aria-label="Quiz questions" data-testid="quiz-output">
        <ol className="quiz">
          {questions.map((entry, i) => (
            <QuestionCard
              key={entryKey(entry)}
              index={i}
              question={entry.question}
              answer={answers[entryKey(entry)]}
              onPick={(choice) => pick(entry, choice)}
            />
          ))}
        </ol>
      </div>
      {running ? (
        <p className="writing">
          Writing question {questions.length + 1}
          <span className="caret" aria-hidden="true" />
        </p>
      ) : null}
      {questions.length > 0 ? (
        <p className="score" data-testid="score">
          {finished
            ? `Your score: ${score} / ${questions.length}`
            : `Answered ${answered} of ${questions.length}${running ? ' so far' : ''}`}
        </p>
      ) : null}
      <FollowUps stream={stream} title="Quiz" />
      <StreamMessages stream={stream} />
    </section>
  );
}
