/**
 * Accessibility against the real server (scripted provider): axe-core finds no serious or critical
 * violation with the page idle, while a block streams, and when the blocks are done; the page's one
 * polite announcer says a stream's moments (a bounded number of changes for a stream of many tokens),
 * the streaming text sits in a log region that is not read token by token, and Escape stops the block
 * that has focus, as its Stop button does.
 */
import AxeBuilder from '@axe-core/playwright';
import { expect, test, type Page } from '@playwright/test';
import { answer, ask, block, collapse, waitForStatus } from './helpers.ts';

/**
 * An input of its own for each stream: the server shares identical requests and replays a completed one
 * at once (SHARED_CACHE_TTL_S), and these tests need a stream that is live while they look at it.
 */
function fresh(text: string): string {
  return `${text} ${Math.random().toString(36).slice(2, 8)}`;
}

/** Fill a block's topic with a fresh input and press its button. */
async function startBlock(page: Page, type: 'quiz' | 'diagram', topic = 'Photosynthesis'): Promise<void> {
  const section = block(page, type);
  await section.getByRole('textbox').fill(fresh(topic));
  await section.getByRole('button', { name: type === 'quiz' ? 'Make quiz' : 'Draw diagram' }).click();
}

/** Run axe on the page; print every violation found, and fail on a serious or critical one. */
async function expectNoSeriousViolations(page: Page, state: string): Promise<void> {
  const results = await new AxeBuilder({ page }).analyze();
  for (const v of results.violations) {
    console.log(`axe [${state}] ${v.impact ?? 'unknown'} ${v.id}: ${v.help} (${v.nodes.length} node(s))`);
    for (const node of v.nodes.slice(0, 5)) console.log(`    ${node.target.join(' ')}: ${node.failureSummary?.replace(/\s+/g, ' ') ?? ''}`);
  }
  const incomplete = results.incomplete.map((r) => `${r.id} (${r.nodes.length})`).join(', ');
  console.log(`axe [${state}]: ${results.violations.length} violation(s), ${results.passes.length} rules passed, needs review: ${incomplete || 'none'}`);
  for (const r of results.incomplete) {
    for (const node of r.nodes.slice(0, 3)) console.log(`    review ${r.id} ${node.target.join(' ')}: ${(node.any[0]?.message ?? node.failureSummary ?? '').replace(/\s+/g, ' ')}`);
  }
  const blocking = results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  expect(blocking.map((v) => `${v.impact} ${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`), state).toEqual([]);
}

test('axe: no serious or critical violations idle, while streaming, and done', async ({ page }) => {
  await page.goto('/');
  await expect(block(page, 'quiz')).toBeVisible();
  await expectNoSeriousViolations(page, 'idle');

  await startBlock(page, 'quiz');
  await startBlock(page, 'diagram');
  await ask(page, fresh('Why do leaves look green'));
  await waitForStatus(page, 'ask_question', 'Streaming');
  await expect.poll(async () => ((await answer(page).textContent()) ?? '').length).toBeGreaterThan(20);
  await expectNoSeriousViolations(page, 'streaming');

  await waitForStatus(page, 'ask_question', 'Done');
  await waitForStatus(page, 'quiz', 'Done');
  await waitForStatus(page, 'diagram', 'Done');
  await expect(block(page, 'diagram').getByTestId('diagram').locator('svg')).toBeVisible();
  await expectNoSeriousViolations(page, 'done');
});

test('axe: dark colour scheme, answered quiz', async ({ page }) => {
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.goto('/');
  await expectNoSeriousViolations(page, 'dark idle');
  const quiz = block(page, 'quiz');
  await startBlock(page, 'quiz');
  await waitForStatus(page, 'quiz', 'Done');
  const questions = quiz.getByTestId('quiz-question');
  await questions.nth(0).getByRole('button', { name: /^A / }).click();
  await questions.nth(1).getByRole('button', { name: /^A / }).click();
  await expectNoSeriousViolations(page, 'dark quiz answered');
});

test('the announcer says a stream of many tokens in a bounded number of changes; the answer is a log', async ({ page }) => {
  await page.goto('/');
  const region = page.getByTestId('stream-announcer');
  await expect(region).toHaveAttribute('aria-live', 'polite');
  await expect(page.getByTestId('stream-announcer')).toHaveCount(1);
  await page.evaluate(() => {
    const w = window as unknown as { __announced: { records: number; callbacks: number; texts: string[] }; __answerRecords: number };
    w.__announced = { records: 0, callbacks: 0, texts: [] };
    w.__answerRecords = 0;
    const el = document.querySelector('[data-testid="stream-announcer"]')!;
    new MutationObserver((records) => {
      w.__announced.callbacks += 1;
      w.__announced.records += records.length;
      for (const r of records) r.addedNodes.forEach((n) => w.__announced.texts.push(n.textContent ?? ''));
    }).observe(el, { subtree: true, childList: true, characterData: true });
    const answerEl = document.querySelector('section[data-block="ask_question"] [data-testid="answer"]')!;
    new MutationObserver((records) => (w.__answerRecords += records.length)).observe(answerEl, { subtree: true, childList: true, characterData: true });
  });
  const output = answer(page);
  await expect(output).toHaveAttribute('role', 'log');
  await expect(output).toHaveAttribute('aria-live', 'off');
  await ask(page, fresh('Why do leaves look green'));
  await waitForStatus(page, 'ask_question', 'Streaming');
  await expect(output).toHaveAttribute('aria-busy', 'true');
  await waitForStatus(page, 'ask_question', 'Done');
  await expect(output).toHaveAttribute('aria-busy', 'false');
  const tokens = Number.parseInt((await block(page, 'ask_question').getByTestId('count').textContent()) ?? '0', 10);
  expect(tokens).toBeGreaterThan(50);

  const { announced, answerRecords } = await page.evaluate(() => {
    const w = window as unknown as { __announced: { records: number; callbacks: number; texts: string[] }; __answerRecords: number };
    return { announced: w.__announced, answerRecords: w.__answerRecords };
  });
  console.log(`${tokens} tokens: the answer changed in ${answerRecords} mutation records; the announcer in ${announced.records} (${JSON.stringify(announced.texts)})`);
  expect(answerRecords).toBeGreaterThan(20); // the text did stream in many steps
  expect(announced.texts).toEqual(['Ask a question: started.', 'Ask a question: done.']);
  expect(announced.records).toBeLessThanOrEqual(4);
});

test('a quiz says each question ready, once', async ({ page }) => {
  await page.goto('/');
  await page.evaluate(() => {
    const w = window as unknown as { __said: string[] };
    w.__said = [];
    new MutationObserver((records) => {
      for (const r of records) r.addedNodes.forEach((n) => w.__said.push(n.textContent ?? ''));
    }).observe(document.querySelector('[data-testid="stream-announcer"]')!, { childList: true, subtree: true });
  });
  const quiz = block(page, 'quiz');
  await quiz.getByRole('combobox').selectOption('3');
  await startBlock(page, 'quiz');
  await waitForStatus(page, 'quiz', 'Done');
  await expect(quiz.getByTestId('quiz-question')).toHaveCount(3);
  const said = await page.evaluate(() => (window as unknown as { __said: string[] }).__said);
  console.log(`quiz announcements: ${JSON.stringify(said)}`);
  // a question that lands in the same frame as the end is covered by "done"
  expect(said[0]).toBe('Quiz: started.');
  expect(said.at(-1)).toBe('Quiz: done, 3 questions.');
  const questions = said.slice(1, -1);
  expect(questions.length).toBeGreaterThanOrEqual(1);
  questions.forEach((text, i) => expect(text).toBe(`Quiz: question ${i + 1} of 3 ready.`));
});

test('keyboard: every control is reachable with Tab and shows a focus ring', async ({ page }) => {
  await page.goto('/');
  await expect(block(page, 'diagram')).toBeVisible();
  // number the blocks' enabled controls, then Tab through the page and see which are reached
  const expected = await page.evaluate(() => {
    const controls = [...document.querySelectorAll<HTMLElement>('.aib-block :is(button, input, select, a[href], summary)')].filter(
      (el) => !(el as HTMLButtonElement).disabled,
    );
    controls.forEach((el, i) => (el.dataset.a11yIndex = String(i)));
    return controls.length;
  });
  const reached = new Map<number, string>();
  const outlines: string[] = [];
  for (let i = 0; i < 60; i += 1) {
    await page.keyboard.press('Tab');
    const focused = await page.evaluate(() => {
      const el = document.activeElement as HTMLElement | null;
      if (el === null || el === document.body) return null;
      const style = getComputedStyle(el);
      const label = el.getAttribute('aria-label') ?? (el.id ? document.querySelector(`label[for="${el.id}"]`)?.textContent : null) ?? el.textContent;
      return {
        index: el.dataset.a11yIndex === undefined ? -1 : Number(el.dataset.a11yIndex),
        name: `${el.tagName.toLowerCase()} "${(label ?? '').trim().slice(0, 40)}"`,
        outline: `${style.outlineStyle} ${style.outlineWidth}`,
      };
    });
    if (focused === null || reached.has(focused.index)) break;
    if (focused.index >= 0) reached.set(focused.index, focused.name);
    outlines.push(`${focused.name} [${focused.outline}]`);
    expect(focused.outline, focused.name).toBe('solid 2px');
  }
  console.log(`Tab order: ${outlines.join(' | ')}`);
  expect(reached.size).toBe(expected);
});

test('Escape stops the streaming block that has focus, as its Stop button does', async ({ page }) => {
  await page.goto('/');
  const section = block(page, 'ask_question');
  await ask(page, fresh('Why do leaves look green'));
  await waitForStatus(page, 'ask_question', 'Streaming');
  await expect.poll(async () => ((await answer(page).textContent()) ?? '').length).toBeGreaterThan(10);
  // Escape in another block does not stop this one
  await block(page, 'explain_eli10').getByRole('textbox').focus();
  await page.keyboard.press('Escape');
  await page.waitForTimeout(200);
  await expect(section.getByTestId('status')).toHaveText('Streaming');

  await section.getByRole('textbox').focus();
  await page.keyboard.press('Escape');
  await waitForStatus(page, 'ask_question', 'Stopped', 10_000);
  await expect(section.getByRole('textbox')).toBeFocused();
  await expect(page.getByTestId('stream-announcer')).toContainText('Ask a question: stopped.');
  const partial = collapse((await answer(page).textContent()) ?? '');
  expect(partial.length).toBeGreaterThan(10); // the text so far is kept

  // from the Stop button itself: Escape stops, and focus moves to Retry rather than the page's top
  await section.getByRole('button', { name: 'Retry' }).click();
  await waitForStatus(page, 'ask_question', 'Streaming');
  await section.getByRole('button', { name: 'Stop' }).focus();
  await page.keyboard.press('Escape');
  await waitForStatus(page, 'ask_question', 'Stopped', 10_000);
  await expect(section.getByRole('button', { name: 'Retry' })).toBeFocused();
});
