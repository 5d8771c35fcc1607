import { useEffect, useId, useState, type FormEvent } from 'react';
import type { QuizQuestion } from '../ai/events.ts';
import { useAIBlockStreaming } from '../ai/streamHooks.ts';
import { StreamMessages, StreamStatusBar } from './StreamStatusBar.tsx';
import type { BlockProps } from './TextAnswerBlock.tsx';
import { FollowUps } from './FollowUps.tsx';

const LETTERS = ['A', 'B', 'C', 'D'];

interface CardProps {
  index: number;
  question: QuizQuestion;
  picked: number | undefined;
  onPick(choice: number): void;
}

function QuestionCard({ index, question, picked, onPick }: CardProps) {
  const headingId = useId();
  const answered = picked !== undefined;
  const correct = picked === question.answer_index;
  return (
    <li className="quiz-question" aria-labelledby={headingId} data-testid="quiz-question">
      <h3 id={headingId}>
        <span className="quiz-number">{index + 1}.</span> {question.question}
      </h3>
      <div className="choices" role="group" aria-label={`Choices for question ${index + 1}`}>
        {question.choices.map((choice, i) => {
          const state = !answered ? '' : i === question.answer_index ? 'right' : i === picked ? 'wrong' : 'other';
          return (
            <button
              key={i}
              type="button"
              className={`choice ${state}`}
              disabled={answered}
              aria-pressed={picked === i}
              onClick={() => onPick(i)}
            >
              <span className="choice-letter">{LETTERS[i]}</span> {choice}
            </button>
          );
        })}
      </div>
      <div className="feedback" aria-live="polite">
        {answered ? (
          <p className={correct ? 'right' : 'wrong'} data-testid="feedback">
            <strong>{correct ? 'Correct.' : `Not quite: the answer is ${LETTERS[question.answer_index]}.`}</strong>{' '}
            {question.explanation}
          </p>
        ) : null}
      </div>
    </li>
  );
}

export function QuizBlock({ topic, join }: BlockProps) {
  const stream = useAIBlockStreaming('quiz');
  const [input, setInput] = useState(topic);
  const [count, setCount] = useState(3);
  const [picks, setPicks] = useState<Record<number, number>>({});
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
  useEffect(() => setPicks({}), [quizId]);

  const submit = (event: FormEvent) => {
    event.preventDefault();
    const text = input.trim();
    if (text) {
      setPicks({});
      void stream.run(text, { num_questions: count });
    }
  };

  const questions = [
    ...stream.thread.flatMap((turn) => turn.questions),
    ...stream.questions.filter((q): q is QuizQuestion => q !== undefined),
  ];
  const answered = Object.keys(picks).length;
  const score = questions.reduce((sum, q, i) => sum + (picks[i] === q.answer_index ? 1 : 0), 0);
  const finished = stream.status === 'done' && questions.length > 0 && answered === questions.length;

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
          {questions.map((question, i) => (
            <QuestionCard
              key={i}
              index={i}
              question={question}
              picked={picks[i]}
              onPick={(choice) => setPicks((p) => (p[i] === undefined ? { ...p, [i]: choice } : p))}
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
