/**
 * Follow-ups (issue 17) against the real server (scripted provider): a finished answer's "Simpler"
 * streams a second turn below the first, which stays; the learner's own words make a third; a quiz's
 * "Another question" adds question 4; a diagram's "More detail" is drawn again with the earlier one kept.
 * And shared generations: two sessions (two browser contexts) asking the same ELI10 at once both
 * stream the same words from one generation, and the page says so in at least one of them.
 *
 * Every input here is fresh: the server shares identical requests and replays a completed one at once.
 */
import { expect, test, type Page } from '@playwright/test';
import { join } from 'node:path';
import { SCREENSHOTS, answer, ask, block, collapse, growth, recordGrowth, waitForStatus } from './helpers.ts';

function fresh(text: string): string {
  return `${text} ${Math.random().toString(36).slice(2, 8)}`;
}

async function said(page: Page): Promise<string> {
  return (await page.getByTestId('stream-announcer').textContent()) ?? '';
}

test('ask: Simpler streams a second turn below the first, which stays; then a follow-up in own words', async ({ page }) => {
  await page.goto('/');
  const section = block(page, 'ask_question');
  const question = fresh('Why do clouds float');
  await expect(section.getByRole('button', { name: 'Simpler' })).toHaveCount(0); // nothing to follow up yet
  await ask(page, question);
  await waitForStatus(page, 'ask_question', 'Streaming');
  await expect(section.getByRole('button', { name: 'Simpler' })).toHaveCount(0); // not while it streams
  await waitForStatus(page, 'ask_question', 'Done');
  const first = collapse((await answer(page).textContent()) ?? '');
  expect(first.length).toBeGreaterThan(60);

  await recordGrowth(page);
  await section.getByRole('button', { name: 'Simpler' }).click();
  await waitForStatus(page, 'ask_question', 'Streaming');
  await expect(section.getByRole('group', { name: 'Follow up on Ask a question' })).toHaveCount(0);
  const earlier = section.getByTestId('thread-turn');
  await expect(earlier).toHaveCount(1);
  await expect(earlier).toContainText(question);
  expect(collapse((await earlier.textContent()) ?? '')).toContain(first);
  await expect(section.getByTestId('turn-asked')).toHaveText(/Simpler/);
  await waitForStatus(page, 'ask_question', 'Done');
  const second = collapse((await answer(page).textContent()) ?? '');
  expect(second.length).toBeGreaterThan(60);
  const states = (await growth(page)).map(collapse).filter((t) => t && t !== second);
  console.log(`Simpler: the second turn grew through ${states.length} states to ${second.length} characters`);
  expect(states.length).toBeGreaterThanOrEqual(3); // it streamed, not replayed at once
  await expect(earlier).toBeVisible(); // the first turn is still there
  expect(collapse((await earlier.textContent()) ?? '')).toContain(first);
  await expect.poll(() => said(page)).toContain('Ask a question (Simpler): done.');
  await section.screenshot({ path: join(SCREENSHOTS, 'follow-up-simpler.png') });

  // the learner's own words
  await section.getByRole('button', { name: 'Follow up in your own words' }).click();
  await section.getByLabel('Your follow-up question').fill('Can a cloud be heavy?');
  await section.getByRole('button', { name: 'Send' }).click();
  await waitForStatus(page, 'ask_question', 'Done');
  await expect(section.getByTestId('thread-turn')).toHaveCount(2);
  await expect(section.getByTestId('turn-asked')).toContainText('Can a cloud be heavy?');
  await expect(section.getByRole('button', { name: 'Why?' })).toBeVisible();
});

test('a follow-up over the WebSocket: the start frame names the turn it continues', async ({ page }) => {
  const sent: string[] = [];
  page.on('websocket', (ws) => ws.on('framesent', (frame) => sent.push(String(frame.payload))));
  await page.goto('/?transport=websocket');
  const section = block(page, 'explain_eli10');
  await section.getByRole('textbox').fill(fresh('Why bread rises'));
  await section.getByRole('button', { name: 'Explain' }).click();
  await waitForStatus(page, 'explain_eli10', 'Done');
  await section.getByRole('button', { name: 'Why?' }).click();
  await waitForStatus(page, 'explain_eli10', 'Done');
  await expect(section.getByTestId('thread-turn')).toHaveCount(1);
  await expect(section.getByTestId('turn-asked')).toHaveText(/Why\?/);
  const starts = sent.map((text) => JSON.parse(text) as Record<string, unknown>).filter((m) => m.type === 'start');
  expect(starts).toHaveLength(2);
  expect(starts[1]).toMatchObject({ block_type: 'explain_eli10', follow_up: 'why' });
  expect(typeof starts[1]!.parent_stream_id).toBe('string');
  expect(starts[0]!.parent_stream_id).toBeUndefined();
});

test('quiz: Another question adds question 4, the answers given kept', async ({ page }) => {
  await page.goto('/');
  const quiz = block(page, 'quiz');
  await quiz.getByRole('combobox').selectOption('3');
  await quiz.getByLabel('Topic').fill(fresh('Tides'));
  await quiz.getByRole('button', { name: 'Make quiz' }).click();
  await waitForStatus(page, 'quiz', 'Done');
  const questions = quiz.getByTestId('quiz-question');
  await expect(questions).toHaveCount(3);
  await questions.first().getByRole('button', { name: /^A / }).click();
  await expect(questions.first().getByTestId('feedback')).toContainText('Correct.');

  await quiz.getByRole('button', { name: 'Another question' }).click();
  await expect(questions).toHaveCount(4);
  await expect(questions.nth(3).locator('h3')).toHaveText(/^4\. /);
  await waitForStatus(page, 'quiz', 'Done');
  await expect(quiz.getByTestId('count')).toHaveText('4 questions');
  await expect(questions.first().getByTestId('feedback')).toContainText('Correct.'); // kept
  await expect(quiz.getByTestId('score')).toHaveText('Answered 1 of 4');
  await expect.poll(() => said(page)).toContain('Quiz (Another question): done, 4 questions.');
  await expect(quiz.getByRole('button', { name: 'Another question' })).toBeVisible(); // and again
});

test('diagram: More detail is drawn again, below the earlier diagram', async ({ page }) => {
  await page.goto('/');
  const diagram = block(page, 'diagram');
  await diagram.getByLabel('Topic').fill(fresh('The water cycle'));
  await diagram.getByRole('button', { name: 'Draw diagram' }).click();
  await expect(diagram.getByTestId('diagram').locator('svg')).toBeVisible();
  await diagram.getByRole('button', { name: 'More detail' }).click();
  await waitForStatus(page, 'diagram', 'Streaming');
  await expect(diagram.getByTestId('diagram-source')).toContainText('flowchart');
  await expect(diagram.getByTestId('thread-diagram').locator('svg')).toBeVisible(); // the earlier one, still drawn
  await waitForStatus(page, 'diagram', 'Done');
  const svg = diagram.getByTestId('diagram').locator('svg');
  await expect(svg).toBeVisible();
  await expect(svg).toContainText('First idea');
  await expect(diagram.getByTestId('thread-diagram').locator('svg')).toBeVisible();
  await expect(diagram.getByTestId('diagram-invalid')).toHaveCount(0);
  // the new one is below the earlier one
  const earlierBox = await diagram.getByTestId('thread-diagram').boundingBox();
  const newBox = await diagram.getByTestId('diagram').boundingBox();
  expect(newBox!.y).toBeGreaterThan(earlierBox!.y);
  await diagram.screenshot({ path: join(SCREENSHOTS, 'follow-up-diagram.png') });
});

// On the real local model, the server with the product's defaults (SHARED_GENERATIONS on); the
// scripted server of the other tests turns sharing off, since they watch fresh generations grow.
const localURL = `http://127.0.0.1:${process.env.E2E_LOCAL_PORT}`;

test('two sessions asking the same ELI10 at once stream the same words from one generation', async ({ browser }) => {
  const topic = fresh('Why the moon changes shape');
  const contexts = await Promise.all([browser.newContext({ baseURL: localURL }), browser.newContext({ baseURL: localURL })]);
  try {
    const pages = await Promise.all(contexts.map((context) => context.newPage()));
    await Promise.all(pages.map((p) => p.goto('/')));
    for (const p of pages) {
      await block(p, 'explain_eli10').getByRole('textbox').fill(topic);
      // the time of the click and of the answer's first text, in the page's own clock
      await p.evaluate(() => {
        const w = window as unknown as { __clickAt: number | null; __firstTextAt: number | null; __states: number };
        w.__clickAt = null;
        w.__firstTextAt = null;
        w.__states = 0;
        const section = document.querySelector('section[data-block="explain_eli10"]')!;
        section.querySelector('button[type="submit"]')!.addEventListener('click', () => (w.__clickAt ??= performance.now()), { capture: true });
        let last = '';
        new MutationObserver(() => {
          const text = section.querySelector('[data-testid="answer"]')?.textContent ?? '';
          if (w.__clickAt === null || text === last || section.querySelector('.placeholder')) return;
          last = text;
          w.__states += 1;
          w.__firstTextAt ??= performance.now();
        }).observe(section, { subtree: true, childList: true, characterData: true });
      });
    }
    const sentAt = Date.now();
    await Promise.all(pages.map((p) => block(p, 'explain_eli10').getByRole('button', { name: 'Explain' }).click()));
    await Promise.all(pages.map((p) => waitForStatus(p, 'explain_eli10', 'Done')));
    const texts = await Promise.all(pages.map(async (p) => collapse((await answer(p, 'explain_eli10').textContent()) ?? '')));
    expect(texts[0]!.length).toBeGreaterThan(40);
    expect(texts[1]).toBe(texts[0]);

    const notes = await Promise.all(
      pages.map(async (p) => {
        const note = block(p, 'explain_eli10').getByTestId('shared-note');
        return (await note.count()) > 0 ? `${(await note.textContent()) ?? ''} (cached=${await note.getAttribute('data-cached')})` : 'not shared';
      }),
    );
    const timings = await Promise.all(
      pages.map((p) =>
        p.evaluate(() => {
          const w = window as unknown as { __clickAt: number | null; __firstTextAt: number | null; __states: number };
          return { firstTokenMs: w.__clickAt !== null && w.__firstTextAt !== null ? Math.round(w.__firstTextAt - w.__clickAt) : null, states: w.__states };
        }),
      ),
    );
    const tokens = await Promise.all(pages.map(async (p) => (await block(p, 'explain_eli10').getByTestId('count').textContent()) ?? ''));
    pages.forEach((_, i) =>
      console.log(
        `tab ${'AB'[i]}: first token ${timings[i]!.firstTokenMs} ms after its click, ${timings[i]!.states} states, ${tokens[i]}, ${notes[i]}`,
      ),
    );
    console.log(`both done ${Date.now() - sentAt} ms after the clicks were sent; identical text of ${texts[0]!.length} characters`);
    expect(notes.filter((n) => n.startsWith('shared with your class') || n.startsWith('from a moment ago')).length).toBeGreaterThanOrEqual(1);
    expect(timings.every((t) => t.firstTokenMs !== null)).toBe(true);
  } finally {
    await Promise.all(contexts.map((context) => context.close()));
  }
});
