/**
 * The page folds a stream the way the server's logs do: the cases of contracts/fold-cases.json,
 * which tests/streams/test_log.py runs against the memory and the Redis log, reduced here with
 * streamState.ts. A case whose fold differs on either side fails there or here.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { toStreamEvent, type StreamEvent } from './events.ts';
import { initialStreamState, reduce } from './streamState.ts';

interface FoldCase {
  name: string;
  events: { type: string; data: Record<string, unknown> }[];
  expected: { text: string; questions: unknown[]; output_tokens: number; status: string };
}

const table = JSON.parse(readFileSync(resolve(process.cwd(), '..', 'contracts', 'fold-cases.json'), 'utf8')) as {
  cases: FoldCase[];
};

describe('the shared fold table (contracts/fold-cases.json)', () => {
  it('has cases', () => expect(table.cases.length).toBeGreaterThan(3));

  for (const fold of table.cases) {
    it(fold.name, () => {
      const events = fold.events.map((e, i) => {
        const event = toStreamEvent(e.type, `abcd1234-${i + 1}`, e.data);
        if (event === null) throw new Error(`not a well-formed ${e.type} event: ${JSON.stringify(e.data)}`);
        return event;
      }) as StreamEvent[];
      const state = reduce(
        { ...initialStreamState, status: 'connecting' },
        events.map((event) => ({ kind: 'event' as const, event })),
      );
      expect(state.text).toBe(fold.expected.text);
      expect(state.questions).toEqual(fold.expected.questions);
      expect(state.outputTokens).toBe(fold.expected.output_tokens);
      expect(state.outcome ?? 'running').toBe(fold.expected.status);
    });
  }
});
