import { useEffect, useId, useState, type FormEvent } from 'react';
import type { BlockType } from '../ai/events.ts';
import { useAIBlockStreaming } from '../ai/streamHooks.ts';
import { StreamMessages, StreamStatusBar } from './StreamStatusBar.tsx';
import { StreamingMarkdown } from './StreamingMarkdown.tsx';
import { FollowUps, TurnHeading, endNote } from './FollowUps.tsx';

export interface JoinRequest {
  streamId: string;
  /** Changes for each request, so joining the same id twice follows it again. */
  nonce: number;
}

/** The props of the four blocks. */
export interface BlockProps {
  /** The lesson's topic: the blocks' default input and wording. */
  topic: string;
  /** Follow a stream started elsewhere (set a new `nonce` to follow the same id again). */
  join?: JoinRequest | null;
}

export interface TextAnswerBlockProps {
  blockType: Extract<BlockType, 'ask_question' | 'explain_eli10'>;
  title: string;
  description: string;
  inputLabel: string;
  submitLabel: string;
  defaultInput: string;
  maxTokens?: number;
  join?: JoinRequest | null;
}

/**
 * A question or topic in, a streamed Markdown answer out (ask and ELI10 share it). A finished answer
 * offers follow-ups (Simpler, Another example, Why?, the learner's own words); the earlier turns stay
 * above the one streaming, each labelled with what was asked.
 */
export function TextAnswerBlock(props: TextAnswerBlockProps) {
  const { blockType, title, description, inputLabel, submitLabel, defaultInput, maxTokens, join } = props;
  const stream = useAIBlockStreaming(blockType, { label: title });
  const [input, setInput] = useState(defaultInput);
  const inputId = useId();
  const answerId = useId();
  const { running } = stream;

  const { join: follow } = stream;
  useEffect(() => {
    if (join) follow(join.streamId);
  }, [join, follow]);

  const submit = (event: FormEvent) => {
    event.preventDefault();
    const text = input.trim();
    if (text) void stream.run(text, maxTokens ? { max_tokens: maxTokens } : undefined);
  };

  return (
    <section className="aib-block" aria-labelledby={`${answerId}-title`} data-block={blockType} data-status={stream.status} {...stream.blockProps}>
      <h2 id={`${answerId}-title`}>{title}</h2>
      <p className="block-description">{description}</p>
      <form className="ask-form" onSubmit={submit}>
        <label htmlFor={inputId}>{inputLabel}</label>
        <div className="input-row">
          <input id={inputId} value={input} onChange={(e) => setInput(e.target.value)} maxLength={2000} required />
          <button type="submit" disabled={running || !input.trim()}>
            {submitLabel}
          </button>
        </div>
      </form>
      {stream.thread.length > 0 ? (
        <ol className="thread" aria-label={`${title}: earlier answers`} data-testid="thread">
          {stream.thread.map((turn) => (
            <li key={turn.streamId} className="thread-turn" data-testid="thread-turn">
              <TurnHeading ask={turn} note={endNote(turn)} />
              <StreamingMarkdown text={turn.text} streaming={false} mend={turn.outcome !== 'complete'} />
            </li>
          ))}
        </ol>
      ) : null}
      <StreamStatusBar stream={stream} />
      {stream.thread.length > 0 && stream.asked ? <TurnHeading ask={stream.asked} current /> : null}
      <div
        className="answer"
        id={answerId}
        data-testid="answer"
        {...stream.outputProps}
        aria-label={`${title}: answer`}
      >
        {stream.status === 'idle' ? (
          <p className="placeholder">The answer appears here as it is written.</p>
        ) : (
          <StreamingMarkdown text={stream.text} streaming={running} mend={running || stream.outcome !== 'complete'} />
        )}
      </div>
      <FollowUps stream={stream} title={title} />
      <StreamMessages stream={stream} />
    </section>
  );
}
