import { describe, expect, it } from 'vitest';
import { id, startEvent, token } from '../test/fakeTransport.ts';
import type { StreamEvent } from './events.ts';
import { initialStreamState, reduce } from './streamState.ts';

describe('stream state', () => {
  it('a reset does not move the resume cursor; the snapshot after it does', () => {
    const reset: StreamEvent = { id: id(9, 'new'), type: 'reset', data: { reason: 'epoch_mismatch', message: 'recreated' } };
    const snapshot: StreamEvent = {
      id: id(9, 'new'),
      type: 'snapshot',
      data: { start: null, text: 'One two', questions: [], output_tokens: 2 },
    };
    let state = reduce(initialStreamState, [{ kind: 'event', event: startEvent() }, { kind: 'event', event: token(2, 'One') }]);
    expect(state.lastEventId).toBe(id(2));
    state = reduce(state, [{ kind: 'event', event: reset }]);
    expect(state.lastEventId).toBe(id(2)); // a cut here resumes from 2 and gets reset + snapshot again
    state = reduce(state, [{ kind: 'event', event: snapshot }]);
    expect(state.lastEventId).toBe(id(9, 'new'));
    expect(state.text).toBe('One two');
  });
});
