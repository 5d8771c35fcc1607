#!/usr/bin/env node
/**
 * Builds `@quart-ai-blocks/react` into package/dist/ (`npm run build:package`):
 *   1. vite build --config vite.lib.config.ts -> dist/index.js (+ map), dist/styles.css
 *   2. tsc -p tsconfig.lib.json                 -> dist/**\/*.d.ts (strict, declarations only)
 *   3. relative `.ts` / `.tsx` specifiers in the declarations become `.js`, which every
 *      moduleResolution (bundler, node16, nodenext) resolves to the `.d.ts` beside it.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'vite';

const frontend = dirname(dirname(fileURLToPath(import.meta.url)));
const dist = join(frontend, 'package', 'dist');

await build({ root: frontend, configFile: join(frontend, 'vite.lib.config.ts'), logLevel: 'warn' });

const tsc = spawnSync(join(frontend, 'node_modules', '.bin', 'tsc'), ['-p', join(frontend, 'tsconfig.lib.json')], {
  cwd: frontend,
  stdio: 'inherit',
});
if (tsc.status !== 0) process.exit(tsc.status ?? 1);

const specifier = /((?:from|import)\s*\(?\s*)(['"])(\.{1,2}\/[^'"]+?)\.tsx?\2/g;
function rewrite(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) rewrite(path);
    else if (entry.name.endsWith('.d.ts')) {
      const text = readFileSync(path, 'utf8');
      const fixed = text.replace(specifier, (_, lead, quote, base) => `${lead}${quote}${base}.js${quote}`);
      if (fixed !== text) writeFileSync(path, fixed);
    }
  }
}
rewrite(dist);
console.log(`built ${dist}`);
