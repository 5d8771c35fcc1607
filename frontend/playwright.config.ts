/**
 * Browser tests: Debian's Chromium (never `playwright install`) against the
 * real Quart server with the scripted provider, serving the built page.
 *
 * The server gets a free port, found once here and passed to the workers
 * through E2E_PORT. When the built page is missing or older than its sources,
 * it is built first.
 */
import { defineConfig } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '..');

function freePort(): string {
  const script = "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})";
  return execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }).trim();
}

function newestMtime(path: string): number {
  const info = statSync(path);
  if (!info.isDirectory()) return info.mtimeMs;
  return Math.max(0, ...readdirSync(path).map((name) => newestMtime(join(path, name))));
}

function distIsStale(): boolean {
  const built = join(here, 'dist', 'index.html');
  if (!existsSync(built)) return true;
  const sources = ['src', 'index.html', 'vite.config.ts', 'package-lock.json'].map((p) => join(here, p)).filter(existsSync);
  return Math.max(...sources.map(newestMtime)) > statSync(built).mtimeMs;
}

process.env.E2E_PORT ??= freePort();
process.env.E2E_LOCAL_PORT ??= freePort();
const port = process.env.E2E_PORT;
const localPort = process.env.E2E_LOCAL_PORT;
const baseURL = `http://127.0.0.1:${port}`;
const python = process.env.E2E_PYTHON ?? join(repoRoot, '.venv', 'bin', 'python');
const build = distIsStale() ? `(cd "${here}" && npm run --silent build) && ` : '';

export default defineConfig({
  testDir: './e2e',
  outputDir: './test-results/artifacts',
  fullyParallel: false,
  workers: 1,
  retries: 0,
  timeout: 60_000,
  expect: { timeout: 15_000 },
  reporter: 'list',
  use: {
    baseURL,
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
    viewport: { width: 1280, height: 900 },
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    },
  },
  webServer: [{
    command: `${build}exec "${python}" -m quartapp`,
    cwd: repoRoot,
    url: `${baseURL}/healthz`,
    reuseExistingServer: false,
    timeout: 180_000,
    stdout: 'ignore',
    stderr: 'pipe',
    env: {
      ...(process.env as Record<string, string>),
      AI_PROVIDER: 'scripted',
      LOG_LEVEL: 'WARNING',
      SCRIPTED_TOKEN_INTERVAL_MS: '30',
      // these specs watch each generation grow, stop and resume; identical requests would replay
      // a completed one at once. The local-model server keeps the default (follow-ups.spec.ts's two tabs).
      SHARED_GENERATIONS: 'false',
      HOST: '127.0.0.1',
      PORT: port,
      FRONTEND_DIST: join(here, 'dist'),
    },
  }, {
    // the real local model (SmolLM2 via llama.cpp), for e2e/local-model.spec.ts
    command: `exec "${python}" -m quartapp`,
    cwd: repoRoot,
    url: `http://127.0.0.1:${localPort}/readyz`,
    reuseExistingServer: false,
    timeout: 180_000,
    stdout: 'ignore',
    stderr: 'pipe',
    env: {
      ...(process.env as Record<string, string>),
      AI_PROVIDER: 'local',
      LOG_LEVEL: 'WARNING',
      MAX_TOKENS: '800',
      HOST: '127.0.0.1',
      PORT: localPort,
      FRONTEND_DIST: join(here, 'dist'),
    },
  }],
});
