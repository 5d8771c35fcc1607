/**
 * The page against the real server (scripted provider): answers grow token by
 * token, a quiz can be finished, a diagram is drawn as SVG, and the same over
 * the WebSocket. Screenshots of each block go to test-results/screenshots/.
 *
 * The server shares identical requests (SHARED_GENERATIONS): a question asked again replays at
 * once, so each test that watches a stream grow asks something no other test asks.
 */
import { expect, test } from '@playwright/test';
import { join } from 'node:path';
import { SCREENSHOTS, answer, ask, block, collapse, expectedAnswer, growth, recordGrowth, waitForStatus } from './helpers.ts';

const QUESTION = 'Why do leaves look green';

for (const transport of ['sse', 'sse-fetch', 'websocket'] as const) {
  test(`ask: the answer grows through intermediate states (${transport})`, async ({ page, request }) => {
    const question = `${QUESTION} (${transport})`;
    const expected = await expectedAnswer(request, 'ask_question', question, 160);
    const socketsClosed: Promise<void>[] = [];
    page.on('websocket', (ws) => socketsClosed.push(new Promise((resolve) => ws.on('close', () => resolve()))));
    await page.goto(transport === 'sse' ? '/' : `/?transport=${transport}`);
    await recordGrowth(page);
    await ask(page, question);
    await waitForStatus(page, 'ask_question', 'Streaming');
    await expect(block(page, 'ask_question').locator('.markdown.streaming')).toBeVisible();
    // the caret: drawn after the last thing written
    const caret = await answer(page).evaluate((el) => {
      const last = el.querySelector('.markdown.streaming > :last-child');
      return last ? getComputedStyle(last, '::after').content : null;
    });
    expect(caret).toContain('▍');
    if (transport === 'sse') {
      await expect.poll(async () => ((await answer(page).textContent()) ?? '').length).toBeGreaterThan(60);
      await block(page, 'ask_question').screenshot({ path: join(SCREENSHOTS, 'ask-question-streaming.png'), animations: 'disabled' });
    }
    await waitForStatus(page, 'ask_question', 'Done');
    await expect(block(page, 'ask_question').locator('.markdown.streaming')).toHaveCount(0);
    if (transport === 'websocket') {
      // the last stream on the socket ended: the socket is closed, nothing left open
      expect(socketsClosed).toHaveLength(1);
      await socketsClosed[0];
    }

    const final = collapse((await answer(page).textContent()) ?? '');
    expect(final).toBe(expected);
    const states = (await growth(page)).map(collapse).filter((t) => t && t !== final);
    expect(states.length).toBeGreaterThanOrEqual(3);
    // each state is a prefix-like earlier version: it never shrinks
    for (let i = 1; i < states.length; i += 1) expect(states[i]!.length).toBeGreaterThanOrEqual(states[i - 1]!.length);
    await expect(block(page, 'ask_question').getByTestId('count')).toHaveText('160 tokens');
    await expect(block(page, 'ask_question').locator('.badge-scripted')).toBeVisible();
    if (transport === 'sse') {
      await block(page, 'ask_question').screenshot({ path: join(SCREENSHOTS, 'ask-question.png') });
    }
  });
}

test('explain like I am 10 streams and finishes', async ({ page, request }) => {
  const expected = await expectedAnswer(request, 'explain_eli10', 'Photosynthesis', 120);
  await page.goto('/');
  await block(page, 'explain_eli10').getByRole('button', { name: 'Explain' }).click();
  await waitForStatus(page, 'explain_eli10', 'Done');
  expect(collapse((await answer(page, 'explain_eli10').textContent()) ?? '')).toBe(expected);
  await block(page, 'explain_eli10').screenshot({ path: join(SCREENSHOTS, 'explain-eli10.png') });
});

for (const transport of ['sse', 'websocket'] as const) {
  test(`quiz: questions arrive one by one and the quiz can be finished (${transport})`, async ({ page }) => {
    await page.goto(transport === 'sse' ? '/' : `/?transport=${transport}`);
    const quiz = block(page, 'quiz');
    await quiz.getByLabel('Topic').fill(`Photosynthesis (${transport})`);
    await quiz.getByRole('button', { name: 'Make quiz' }).click();
    const questions = quiz.getByTestId('quiz-question');
    await expect(questions.first()).toBeVisible();
    // the first question is answerable while the rest are still being written
    await expect(quiz.getByText(/Writing question 2/)).toBeVisible();
    await questions.first().getByRole('button', { name: /^A / }).click();
    await expect(questions.first().getByTestId('feedback')).toContainText('Correct.');

    await waitForStatus(page, 'quiz', 'Done');
    await expect(questions).toHaveCount(3);
    // scripted answers: question i has answer index i % 4; pick B for both remaining (right for 2, wrong for 3)
    await questions.nth(1).getByRole('button', { name: /^B / }).click();
    await questions.nth(2).getByRole('button', { name: /^B / }).focus();
    await page.keyboard.press('Enter');
    await expect(questions.nth(1).getByTestId('feedback')).toContainText('Correct.');
    await expect(questions.nth(2).getByTestId('feedback')).toContainText('Not quite: the answer is C.');
    await expect(questions.nth(2).getByTestId('feedback')).toContainText('Statement C is the scripted correct answer.');
    await expect(quiz.getByTestId('score')).toHaveText('Your score: 2 / 3');
    if (transport === 'sse') await quiz.screenshot({ path: join(SCREENSHOTS, 'quiz.png') });
  });
}

for (const transport of ['sse', 'websocket'] as const) {
  test(`diagram: the source streams, then renders as SVG (${transport})`, async ({ page }) => {
    await page.goto(transport === 'sse' ? '/' : `/?transport=${transport}`);
    const diagram = block(page, 'diagram');
    await diagram.getByRole('button', { name: 'Draw diagram' }).click();
    await expect(diagram.getByTestId('diagram-source')).toContainText('flowchart TD');
    const svg = diagram.getByTestId('diagram').locator('svg');
    await expect(svg).toBeVisible();
    await expect(svg).toContainText('First idea');
    await expect(svg).toContainText('Summary');
    await expect(diagram.getByTestId('diagram-invalid')).toHaveCount(0);
    if (transport === 'sse') await diagram.screenshot({ path: join(SCREENSHOTS, 'diagram.png') });
  });
}

test('the whole page', async ({ page }) => {
  await page.goto('/');
  await block(page, 'quiz').getByRole('button', { name: 'Make quiz' }).click();
  await block(page, 'diagram').getByRole('button', { name: 'Draw diagram' }).click();
  await block(page, 'explain_eli10').getByRole('button', { name: 'Explain' }).click();
  await ask(page, QUESTION);
  await waitForStatus(page, 'quiz', 'Done');
  await waitForStatus(page, 'ask_question', 'Done');
  await expect(block(page, 'diagram').getByTestId('diagram').locator('svg')).toBeVisible();
  await page.screenshot({ path: join(SCREENSHOTS, 'page.png'), fullPage: true });
});
