import { useId, useLayoutEffect, useRef, useState, type FormEvent } from 'react';
import type { FollowUpKind } from '../ai/events.ts';
import type { AIBlockStreaming } from '../ai/streamHooks.ts';
import { FOLLOW_UP_LABELS, OWN_WORDS_FOLLOW_UPS, turnLabel, type ThreadTurn, type TurnAsk } from '../ai/threads.ts';

export interface FollowUpsProps {
  stream: AIBlockStreaming;
  /** The block's title, for the group's name ("Follow up on Ask a question"). */
  title: string;
}

/**
 * The follow-ups of a finished turn (done or stopped): one button per kind the block offers and, for the
 * text blocks, "Follow up in your own words", which opens a small form. Nothing while a turn streams
 * (the server refuses a follow-up of a running turn). Pressing one moves focus to the block's Stop button,
 * so the keyboard stays in the block while the buttons are gone.
 */
export function FollowUps({ stream, title }: FollowUpsProps) {
  const root = useRef<HTMLDivElement>(null);
  const moveFocus = useRef(false);
  const [open, setOpen] = useState(false);
  const [words, setWords] = useState('');
  const inputId = useId();
  const { running, canFollowUp, followUps, blockType } = stream;

  useLayoutEffect(() => {
    if (!running || !moveFocus.current) return;
    moveFocus.current = false;
    const active = document.activeElement;
    if (active !== null && active !== document.body) return; // focus went somewhere on purpose
    root.current?.closest('.aib-block')?.querySelector<HTMLButtonElement>('button[aria-keyshortcuts="Escape"]')?.focus();
  }, [running]);

  const ask = (kind: FollowUpKind | null, text?: string) => {
    moveFocus.current = true;
    void stream.followUp(kind, text);
  };
  const send = (event: FormEvent) => {
    event.preventDefault();
    const text = words.trim();
    if (!text) return;
    setOpen(false);
    setWords('');
    ask(null, text);
  };

  const ownWords = OWN_WORDS_FOLLOW_UPS.has(blockType);
  return (
    <div className="follow-ups" ref={root} data-testid="follow-ups">
      {canFollowUp ? (
        <>
          <div className="follow-up-buttons" role="group" aria-label={`Follow up on ${title}`}>
            {followUps.map((kind) => (
              <button key={kind} type="button" className="secondary" data-action="follow-up" onClick={() => ask(kind)}>
                {FOLLOW_UP_LABELS[kind]}
              </button>
            ))}
            {ownWords ? (
              <button type="button" className="secondary" aria-expanded={open} aria-controls={`${inputId}-form`} onClick={() => setOpen((o) => !o)}>
                Follow up in your own words
              </button>
            ) : null}
          </div>
          {ownWords && open ? (
            <form className="ask-form follow-up-form" id={`${inputId}-form`} onSubmit={send}>
              <label htmlFor={inputId}>Your follow-up question</label>
              <div className="input-row">
                <input id={inputId} value={words} onChange={(e) => setWords(e.target.value)} maxLength={2000} required autoFocus />
                <button type="submit" disabled={!words.trim()}>
                  Send
                </button>
              </div>
            </form>
          ) : null}
        </>
      ) : null}
    </div>
  );
}

/** What a turn asked, as its label: "Simpler", "Another question", or the learner's words in quotes. */
export function askedLabel(ask: TurnAsk): string {
  const label = turnLabel(ask);
  return ask.parentStreamId !== null && ask.followUp === null ? `“${label}”` : label;
}

/** A turn's end worth saying next to it: stopped, interrupted, failed ('' when complete). */
export function endNote(turn: Pick<ThreadTurn, 'outcome' | 'status'>): string {
  if (turn.status === 'error' || turn.outcome === 'failed') return 'failed';
  if (turn.outcome === 'stopped' || turn.outcome === 'interrupted') return turn.outcome;
  return '';
}

/** The label above a turn's answer: what was asked, and how it ended when it did not complete. */
export function TurnHeading({ ask, note = '', current = false }: { ask: TurnAsk; note?: string; current?: boolean }) {
  return (
    <p className={current ? 'turn-asked current' : 'turn-asked'} data-testid={current ? 'turn-asked' : undefined}>
      <span className="visually-hidden">{ask.parentStreamId === null ? 'You asked: ' : 'Follow-up: '}</span>
      {askedLabel(ask)}
      {note ? <span className="turn-note"> · {note}</span> : null}
    </p>
  );
}
