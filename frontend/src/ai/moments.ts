/**
 * The moments of a stream worth saying aloud (issue 17): started, queued (with the position), each quiz
 * question ready, done, stopped, failed. Pure: no I/O, no React.
 *
 * `streamMoment` reads a state and names the moment it is in. Its `key` changes only when the moment
 * does, never with a token, so an announcer that speaks on a change of key speaks once per moment
 * however many tokens stream in between.
 */
import type { BlockType } from './events.ts';
import type { AIStreamState } from './streamState.ts';

export type StreamMomentKind = 'started' | 'queued' | 'question' | 'done' | 'stopped' | 'interrupted' | 'failed';

export interface StreamMoment {
  kind: StreamMomentKind;
  /** Changes exactly when the moment does: `queued:2`, `question:3`, `failed:<message>`. */
  key: string;
  /** Place in the model's queue (`queued`). */
  position?: number;
  /** 1-based number of the question ready (`question`), or of questions received (`done`, quiz). */
  question?: number;
  /** Questions asked for, when known (the start request's `num_questions`). */
  total?: number | null;
  /** The failure's message (`failed`). */
  message?: string;
}

/** How the blocks are named in announcements (the blocks' own titles). */
export const BLOCK_LABELS: Record<BlockType, string> = {
  ask_question: 'Ask a question',
  explain_eli10: "Explain like I'm 10",
  quiz: 'Quiz',
  diagram: 'Diagram',
};

/**
 * The moment `state` is in; null while idle. `total` is the number of quiz questions asked for, if known;
 * `offset` the questions of the thread's earlier turns, so a follow-up's first question is said as question 4.
 */
export function streamMoment(state: AIStreamState, total: number | null = null, offset = 0): StreamMoment | null {
  const received = state.questions.filter((q) => q !== undefined).length + offset;
  if (total !== null && offset > 0) total += offset;
  switch (state.status) {
    case 'idle':
      return null;
    case 'connecting':
    case 'streaming':
      if (state.queuePosition !== null) return { kind: 'queued', key: `queued:${state.queuePosition}`, position: state.queuePosition };
      if (received > offset) return { kind: 'question', key: `question:${received}`, question: received, total };
      return { kind: 'started', key: 'started' };
    case 'done': {
      const kind = state.outcome === 'stopped' ? 'stopped' : state.outcome === 'interrupted' ? 'interrupted' : state.outcome === 'failed' ? 'failed' : 'done';
      return state.blockType === 'quiz' ? { kind, key: `${kind}:${received}`, question: received, total } : { kind, key: kind };
    }
    case 'error': {
      const message = state.error?.message ?? 'unknown error';
      return { kind: 'failed', key: `failed:${message}`, message };
    }
  }
}

const plural = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;

/** What an announcer says for `moment` of the block called `label`: "Quiz: question 2 of 5 ready." */
export function momentText(label: string, moment: StreamMoment | null): string {
  if (moment === null) return '';
  switch (moment.kind) {
    case 'started':
      return `${label}: started.`;
    case 'queued':
      return `${label}: waiting for the model, number ${moment.position} in the queue.`;
    case 'question':
      return moment.total ? `${label}: question ${moment.question} of ${moment.total} ready.` : `${label}: question ${moment.question} ready.`;
    case 'done':
      return moment.question !== undefined ? `${label}: done, ${plural(moment.question, 'question', 'questions')}.` : `${label}: done.`;
    case 'stopped':
      return `${label}: stopped. The text so far is kept.`;
    case 'interrupted':
      return `${label}: interrupted. The text so far is kept.`;
    case 'failed':
      return moment.message ? `${label}: failed: ${moment.message}` : `${label}: failed.`;
  }
}
