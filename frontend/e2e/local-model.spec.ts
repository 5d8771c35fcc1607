/**
 * The real local model in a real browser: SmolLM2 (llama.cpp) answers a question
 * and the answer grows in the page token by token. The server for this test is the
 * second `webServer` in playwright.config.ts (AI_PROVIDER=local, MAX_TOKENS=800: room for a 3-question quiz).
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

test('local model: a quiz and a diagram from the real model are drawn and usable', async ({ page }) => {
  test.setTimeout(240_000);
  await page.goto(`${localURL}/`);
  const quiz = block(page, 'quiz');
  await quiz.getByRole('button', { name: 'Make quiz' }).click();
  await waitForStatus(page, 'quiz', 'Done', 180_000);
  await expect(quiz.locator('.badge-scripted')).toHaveCount(0);
  const questions = quiz.getByTestId('quiz-question');
  await expect(questions).toHaveCount(3);
  for (let i = 0; i < 3; i++) {
    // four distinct, non-empty choices the learner can press
    const labels = (await questions.nth(i).getByRole('button').allTextContents()).map(collapse);
    expect(labels).toHaveLength(4);
    expect(new Set(labels).size).toBe(4);
  }
  await questions.first().getByRole('button', { name: /^A / }).click();
  await expect(questions.first().getByTestId('feedback')).toContainText(/Correct\.|Not quite/);
  await quiz.screenshot({ path: join(SCREENSHOTS, 'quiz-local-model.png') });

  const diagram = block(page, 'diagram');
  await diagram.getByRole('button', { name: 'Draw diagram' }).click();
  await waitForStatus(page, 'diagram', 'Done', 120_000);
  const svg = diagram.getByTestId('diagram').locator('svg');
  await expect(svg).toBeVisible();
  await expect(diagram.getByTestId('diagram-invalid')).toHaveCount(0);
  // one chain of at least four labelled nodes, joined by edges
  expect(await svg.locator('.node').count()).toBeGreaterThanOrEqual(4);
  expect(await svg.locator('.edgePaths path, path.flowchart-link').count()).toBeGreaterThanOrEqual(3);
  await diagram.screenshot({ path: join(SCREENSHOTS, 'diagram-local-model.png') });
});
