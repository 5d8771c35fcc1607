/**
 * A block's thread (issue 17): the turns a learner builds on a first answer with follow-ups
 * ("Simpler", "Another question", their own words). Pure: no I/O, no React.
 *
 * The server keeps the thread (each follow-up's `start` names the stream it continues, and the
 * prompt carries the earlier turns); the page keeps what it showed of each turn, so the earlier
 * turns stay on screen while the next one streams below them.
 */
import type { BlockType, DiagramCheck, EndStatus, FollowUpKind, QuizQuestion, StartData, StartRequest } from './events.ts';
import type { AIStreamState, StreamStatus } from './streamState.ts';
import type { StreamFailure } from './transport.ts';

/** The follow-ups each block offers, in the order the page shows them (the server's `follow_ups`). */
export const BLOCK_FOLLOW_UPS: Record<BlockType, readonly FollowUpKind[]> = {
  ask_question: ['simpler', 'another_example', 'why'],
  explain_eli10: ['simpler', 'another_example', 'why'],
  quiz: ['another_question'],
  diagram: ['more_detail'],
};

/** The buttons' words for each kind. */
export const FOLLOW_UP_LABELS: Record<FollowUpKind, string> = {
  simpler: 'Simpler',
  another_example: 'Another example',
  why: 'Why?',
  another_question: 'Another question',
  more_detail: 'More detail',
};

/** Blocks whose follow-ups may also be the learner's own words (a kind-less follow-up). */
export const OWN_WORDS_FOLLOW_UPS: ReadonlySet<BlockType> = new Set(['ask_question', 'explain_eli10']);

/** What a turn asked. */
export interface TurnAsk {
  /** The learner's words: a thread's topic or question, a follow-up's own question; '' for a kind without words. */
  input: string;
  /** The stream this turn continues; null for a thread's first turn. */
  parentStreamId: string | null;
  /** The follow-up's kind; null for a first turn or a follow-up in the learner's own words. */
  followUp: FollowUpKind | null;
}

/** An earlier turn of a block's thread, as it was shown when the next turn began. */
export interface ThreadTurn extends TurnAsk {
  streamId: string;
  status: StreamStatus;
  /** How it ended (`complete`, `stopped`, ...). */
  outcome: EndStatus | null;
  /** Markdown answer, or Mermaid source for a diagram. */
  text: string;
  questions: QuizQuestion[];
  diagram: DiagramCheck | null;
  meta: StartData | null;
  error: StreamFailure | null;
}

/** How a turn is labelled on the page and to screen readers: "Simpler", or the learner's words. */
export function turnLabel(ask: TurnAsk): string {
  if (ask.followUp !== null) return ask.input ? `${FOLLOW_UP_LABELS[ask.followUp]}: ${ask.input}` : FOLLOW_UP_LABELS[ask.followUp];
  return ask.input;
}

export function askOfRequest(request: StartRequest): TurnAsk {
  return { input: request.input, parentStreamId: request.parent_stream_id ?? null, followUp: request.follow_up ?? null };
}

const KINDS = new Set<string>(Object.keys(FOLLOW_UP_LABELS));

/** What a joined stream asked, from its `start` (a follow-up's `input` there is the thread's topic). */
export function askOfStart(meta: StartData): TurnAsk {
  const followUp = meta.follow_up && KINDS.has(meta.follow_up) ? (meta.follow_up as FollowUpKind) : null;
  const parentStreamId = meta.parent_stream_id ?? null;
  return { input: parentStreamId !== null && followUp !== null ? '' : (meta.input ?? ''), parentStreamId, followUp };
}

/** The turn `state` shows, kept in the thread when a follow-up of it begins. */
export function threadTurn(state: AIStreamState, ask: TurnAsk, streamId: string): ThreadTurn {
  return {
    ...ask,
    streamId,
    status: state.status,
    outcome: state.outcome,
    text: state.text,
    questions: state.questions.filter((q): q is QuizQuestion => q !== undefined),
    diagram: state.diagram,
    meta: state.meta,
    error: state.error,
  };
}

/**
 * The thread a start continues: the current turn appended when the start follows it up, the same
 * thread when it retries a follow-up of the thread's last turn, and a new (empty) one otherwise.
 */
export function threadFor(
  thread: readonly ThreadTurn[],
  current: ThreadTurn | null,
  parentStreamId: string | null,
): readonly ThreadTurn[] {
  if (parentStreamId === null) return NO_TURNS;
  if (current !== null && current.streamId === parentStreamId) return [...thread, current];
  if (thread.at(-1)?.streamId === parentStreamId) return thread;
  return NO_TURNS;
}

export const NO_TURNS: readonly ThreadTurn[] = Object.freeze([]);
