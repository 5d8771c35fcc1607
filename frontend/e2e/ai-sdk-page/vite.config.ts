import react from '@vitejs/plugin-react';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const here = dirname(fileURLToPath(import.meta.url));

/** The test page of e2e/ai-sdk.spec.ts, built into test-results/ai-sdk-page and served at /sdk-page/. */
export default defineConfig({
  root: here,
  base: '/sdk-page/',
  plugins: [react()],
  logLevel: 'warn',
  build: { outDir: join(here, '..', '..', 'test-results', 'ai-sdk-page'), emptyOutDir: true },
});
