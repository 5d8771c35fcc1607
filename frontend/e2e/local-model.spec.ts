/**
 * The real local model in a real browser: SmolLM2 (llama.cpp) answers a question
 * and the answer grows in the page token by token. The server for this test is the
 * second `webServer` in playwright.config.ts (AI_PROVIDER=local, MAX_TOKENS=64).
 */
import { expect, test } from '@playwright/test';
import { join } from 'node:path';

import { SCREENSHOTS, answer, ask, block, collapse, growth, recordGrowth, waitForStatus } from './helpers';

const localURL = `http://127.0.0.1:${process.env.E2E_LOCAL_PORT}`;

test('local model: a real answer streams into the page', async ({ page }) => {
  test.setTimeout(120_000);
  const starts: boolean[] = [];
  page.on('response', async (response) => {
    if (response.url().endsWith('/api/streams') && response.request().method() === 'POST') starts.push(response.ok());
  });
  await page.goto(`${localURL}/`);
  await recordGrowth(page);
  await ask(page, 'Why is the sky blue?');
  await waitForStatus(page, 'ask_question', 'Done', 90_000);
  expect(starts).toEqual([true]);
  // a model's answer, not the scripted provider's: no scripted badge, real words
  await expect(block(page, 'ask_question').locator('.badge-scripted')).toHaveCount(0);
  const final = collapse((await answer(page).textContent()) ?? '');
  expect(final.split(' ').length).toBeGreaterThan(5);
  const states = (await growth(page)).map(collapse).filter((t) => t && t !== final);
  expect(states.length).toBeGreaterThanOrEqual(3);
  await block(page, 'ask_question').screenshot({ path: join(SCREENSHOTS, 'ask-question-local-model.png') });
});
