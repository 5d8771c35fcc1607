#!/usr/bin/env node
/**
 * The package test (`npm run test:package`, also the tail of `npm test`): build `@quart-ai-blocks/react`,
 * `npm pack` it, install the tarball into a tiny host app in a temp dir, and
 *   1. check the manifest: every import of dist/index.js is a declared dependency or peer, the ranges
 *      hold the versions this page is tested with, every `exports` target is in the tarball, no source;
 *   2. type-check the host (`tsc --noEmit`, strict) under moduleResolution "bundler" and "nodenext";
 *   3. bundle it with Vite (+ @vitejs/plugin-react, as a host's Vite app does): the ESM output, the
 *      styles.css export and the lazy Mermaid import all resolve, and Mermaid stays a separate chunk;
 *   4. render the four blocks under `AIBlocksProvider baseUrl="/ai"` in Node (react-dom/server):
 *      the package's ESM runs, with the host's one copy of React.
 * Offline: the host's lockfile is cut from ../package-lock.json (same versions, same integrity), so
 * `npm ci --offline` takes every tarball from the npm cache that `npm ci` of this page filled.
 * KEEP_PACKAGE_CHECK=1 keeps the temp dir.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const started = Date.now();
const frontend = dirname(dirname(fileURLToPath(import.meta.url)));
const packageDir = join(frontend, 'package');
const bin = (name) => join(frontend, 'node_modules', '.bin', name);
const readJson = (path) => JSON.parse(readFileSync(path, 'utf8'));
const step = (text) => console.log(`package check: ${text} (${((Date.now() - started) / 1000).toFixed(1)}s)`);
const failures = [];
const check = (ok, message) => {
  if (!ok) failures.push(message);
};

function run(command, args, cwd) {
  const result = spawnSync(command, args, { cwd, encoding: 'utf8', env: { ...process.env, npm_config_loglevel: 'error' } });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} (in ${cwd}) exited ${result.status}\n${result.stdout}\n${result.stderr}`);
  }
  return result.stdout;
}

/** The lowest version a range such as `^11.0.0` or `>=18` admits, and whether it admits `version`. */
function satisfies(version, range) {
  const parse = (v) => v.replace(/^[^0-9]*/, '').split(/[.-]/).slice(0, 3).map(Number);
  const [major, minor, patch] = parse(version);
  const [rMajor, rMinor = 0, rPatch = 0] = parse(range);
  const atLeast = major > rMajor || (major === rMajor && (minor > rMinor || (minor === rMinor && patch >= rPatch)));
  if (range.startsWith('^')) return atLeast && major === rMajor;
  if (range.startsWith('>=')) return atLeast;
  return version === range;
}

const lock = readJson(join(frontend, 'package-lock.json'));
const pageManifest = readJson(join(frontend, 'package.json'));
const installed = (name) => lock.packages[`node_modules/${name}`]?.version;

// -- build and pack ------------------------------------------------------------------
run(process.execPath, [join(frontend, 'scripts', 'build-package.mjs')], frontend);
step('built package/dist');
const work = mkdtempSync(join(tmpdir(), 'aib-package-'));
const packed = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', work], packageDir))[0];
const tarball = join(work, packed.filename);
const files = packed.files.map((f) => f.path).sort();
step(`packed ${packed.filename}: ${files.length} files, ${(packed.size / 1024).toFixed(1)} kB (${(packed.unpackedSize / 1024).toFixed(1)} kB unpacked)`);

// -- 1. the manifest -----------------------------------------------------------------------
const manifest = readJson(join(packageDir, 'package.json'));
const declared = { ...manifest.dependencies, ...manifest.peerDependencies };
for (const [name, range] of Object.entries(declared)) {
  const version = installed(name);
  check(version !== undefined, `${name} is declared by the package but not installed in frontend/`);
  if (version) check(satisfies(version, range), `${name}@${range} (package) does not admit ${version}, the version the page is tested with`);
  check(pageManifest.dependencies?.[name] !== undefined, `${name} is a package dependency but not one of the page's dependencies`);
}
for (const name of Object.keys(pageManifest.dependencies ?? {})) {
  check(declared[name], `${name} is a dependency of the page but neither a dependency nor a peer of the package (it would be bundled)`);
}
for (const peer of ['react', 'react-dom', 'mermaid']) check(manifest.peerDependencies?.[peer], `${peer} must be a peerDependency`);
for (const peer of Object.keys(manifest.peerDependencies ?? {})) {
  check(!manifest.dependencies?.[peer], `${peer} is both a dependency and a peer`);
}
const bundle = readFileSync(join(packageDir, 'dist', 'index.js'), 'utf8');
const imports = new Set([...bundle.matchAll(/(?:^|\n)\s*import\s[^;]*?from\s*["']([^"'.][^"']*)["']|import\(\s*["']([^"'.][^"']*)["']\s*\)/g)].map((m) => m[1] ?? m[2]));
const packageName = (spec) => spec.split('/').slice(0, spec.startsWith('@') ? 2 : 1).join('/');
for (const spec of imports) check(declared[packageName(spec)], `dist/index.js imports ${spec}, which the manifest does not declare`);
for (const name of ['react', 'react/jsx-runtime', 'mermaid']) check(imports.has(name), `dist/index.js should import ${name} (external), not bundle it`);
check(!/react\.production|__CLIENT_INTERNALS|mermaidAPI\s*=/.test(bundle), 'dist/index.js seems to contain React or Mermaid itself');
const targets = [manifest.types, manifest.main, ...Object.values(manifest.exports).flatMap((t) => (typeof t === 'string' ? [t] : Object.values(t)))];
for (const target of targets) check(files.includes(target.replace(/^\.\//, '')), `${target} (package.json) is not in the tarball`);
check(!files.some((f) => /\.tsx?$/.test(f) && !f.endsWith('.d.ts')), 'the tarball contains TypeScript sources');
check(!files.some((f) => /\.test\.|node_modules|\.tgz$/.test(f)), 'the tarball contains tests or junk');
step(`manifest: ${imports.size} external imports (${[...imports].sort().join(', ')})`);

// -- the host app ---------------------------------------------------------------------------
const host = join(work, 'host');
mkdirSync(join(host, 'src'), { recursive: true });
const pin = (names) => Object.fromEntries(names.map((n) => [n, installed(n)]));
const hostManifest = {
  name: 'host-app',
  version: '1.0.0',
  private: true,
  type: 'module',
  dependencies: { '@quart-ai-blocks/react': `file:../${packed.filename}`, ...pin(['mermaid', 'react', 'react-dom']) },
  devDependencies: pin(['@types/react', '@types/react-dom']),
};
writeFileSync(join(host, 'package.json'), `${JSON.stringify(hostManifest, null, 2)}\n`);
writeFileSync(join(host, 'package-lock.json'), `${JSON.stringify(hostLock(hostManifest), null, 2)}\n`);

/** The host's lockfile: the closure of its dependencies, taken entry by entry from the page's lock. */
function hostLock(root) {
  const packages = {
    '': { name: root.name, version: root.version, dependencies: root.dependencies, devDependencies: root.devDependencies },
  };
  const libPath = 'node_modules/@quart-ai-blocks/react';
  packages[libPath] = {
    version: manifest.version,
    resolved: `file:../${packed.filename}`,
    license: manifest.license,
    dependencies: manifest.dependencies,
    engines: manifest.engines,
    peerDependencies: manifest.peerDependencies,
  };
  const queue = [['', { ...root.dependencies, ...root.devDependencies }], [libPath, { ...manifest.dependencies, ...manifest.peerDependencies }]];
  while (queue.length > 0) {
    const [from, wanted] = queue.shift();
    for (const name of Object.keys(wanted)) {
      if (name === '@quart-ai-blocks/react') continue;
      let at = from;
      let found = null;
      for (;;) {
        const candidate = `${at === '' ? '' : `${at}/`}node_modules/${name}`;
        if (lock.packages[candidate]) {
          found = candidate;
          break;
        }
        if (at === '') break;
        const cut = at.lastIndexOf('/node_modules/');
        at = cut === -1 ? '' : at.slice(0, cut);
      }
      if (found === null) throw new Error(`${name} (wanted by ${from || 'the host'}) is not in frontend/package-lock.json`);
      if (packages[found]) continue;
      const { dev, devOptional, peer, ...entry } = lock.packages[found];
      packages[found] = entry;
      const optionalPeers = entry.peerDependenciesMeta ?? {};
      const peers = Object.fromEntries(Object.entries(entry.peerDependencies ?? {}).filter(([n]) => !optionalPeers[n]?.optional));
      const optional = Object.fromEntries(Object.entries(entry.optionalDependencies ?? {}).filter(([n]) => lock.packages[`node_modules/${n}`]));
      queue.push([found, { ...entry.dependencies, ...peers, ...optional }]);
    }
  }
  return { name: root.name, version: root.version, lockfileVersion: 3, requires: true, packages };
}

const hostSource = `import { useState } from 'react';
import { createRoot } from 'react-dom/client';
import {
  AIBlocksProvider,
  AskQuestionBlock,
  DiagramBlock,
  ExplainELI10Block,
  QuizBlock,
  createTransport,
  useAIBlockStreaming,
  type AIBlockStreaming,
  type BlockProps,
  type BlockType,
  type QuizQuestion,
  type StreamEvent,
  type StreamTransport,
} from '@quart-ai-blocks/react';
import '@quart-ai-blocks/react/styles.css';

/** A host's own block UI over the hook. */
function Flashcards({ topic }: BlockProps) {
  const stream: AIBlockStreaming = useAIBlockStreaming('quiz');
  const questions: QuizQuestion[] = stream.questions;
  const last: StreamEvent | undefined = stream.events.at(-1);
  const [shown, setShown] = useState(0);
  return (
    <section>
      <button onClick={() => void stream.run(topic, { num_questions: 2 })}>Cards ({stream.status})</button>
      <p onClick={() => setShown(shown + 1)}>{questions[shown]?.question ?? last?.type ?? ''}</p>
    </section>
  );
}

const kind: BlockType = 'ask_question';
export const websocket: StreamTransport = createTransport('websocket', { baseUrl: '/ai' });
export const kindUsed: BlockType = kind;

export function Lesson() {
  return (
    <AIBlocksProvider baseUrl="/ai" shareLink={() => null}>
      <AskQuestionBlock topic="Photosynthesis" />
      <ExplainELI10Block topic="Photosynthesis" />
      <QuizBlock topic="Photosynthesis" />
      <DiagramBlock topic="Photosynthesis" join={null} />
      <Flashcards topic="Photosynthesis" />
    </AIBlocksProvider>
  );
}

const root = document.getElementById('root');
if (root) createRoot(root).render(<Lesson />);
`;
writeFileSync(join(host, 'src', 'main.tsx'), hostSource);
writeFileSync(join(host, 'src', 'css.d.ts'), "declare module '*.css';\n");
writeFileSync(join(host, 'index.html'), '<!doctype html>\n<div id="root"></div>\n<script type="module" src="/src/main.tsx"></script>\n');
const compilerOptions = {
  target: 'ES2022',
  lib: ['ES2023', 'DOM', 'DOM.Iterable'],
  jsx: 'react-jsx',
  strict: true,
  noUncheckedIndexedAccess: true,
  exactOptionalPropertyTypes: true,
  noImplicitOverride: true,
  verbatimModuleSyntax: true,
  isolatedModules: true,
  skipLibCheck: false,
  noEmit: true,
  types: [],
};
writeFileSync(
  join(host, 'tsconfig.json'),
  JSON.stringify({ compilerOptions: { ...compilerOptions, module: 'ESNext', moduleResolution: 'bundler' }, include: ['src'] }, null, 2),
);
writeFileSync(
  join(host, 'tsconfig.node.json'),
  JSON.stringify({ compilerOptions: { ...compilerOptions, module: 'NodeNext', moduleResolution: 'NodeNext' }, include: ['src'] }, null, 2),
);

try {
  run('npm', ['ci', '--offline', '--no-audit', '--no-fund', '--ignore-scripts'], host);
} catch (error) {
  // A tarball missing from the npm cache (say, a cleaned cache): the same lock, from the registry.
  console.log(`package check: npm ci --offline failed (${String(error).split('\n')[0]}); again with --prefer-offline`);
  run('npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts'], host);
}
check(!existsSync(join(host, 'node_modules', '@quart-ai-blocks', 'react', 'node_modules', 'react')), 'the package got a React of its own');
step(`npm ci: ${readdirSync(join(host, 'node_modules')).length} entries in the host's node_modules`);

// -- 2. types ------------------------------------------------------------------------------------
for (const config of ['tsconfig.json', 'tsconfig.node.json']) {
  const result = spawnSync(bin('tsc'), ['-p', config], { cwd: host, encoding: 'utf8' });
  check(result.status === 0, `tsc -p ${config} (host) failed:\n${result.stdout}${result.stderr}`);
}
step('tsc --noEmit (strict; bundler and nodenext resolution)');

// -- 3. bundle ---------------------------------------------------------------------------------
const { build } = await import('vite');
const { default: react } = await import('@vitejs/plugin-react');
await build({
  root: host,
  configFile: false,
  logLevel: 'error',
  plugins: [react()],
  build: { outDir: join(host, 'dist'), chunkSizeWarningLimit: 5000 },
});
const assets = readdirSync(join(host, 'dist', 'assets'));
const js = assets.filter((f) => f.endsWith('.js'));
const entry = js.find((f) => f.startsWith('index-'));
check(entry !== undefined, `no entry chunk among ${js.join(', ')}`);
check(assets.some((f) => f.endsWith('.css') && readFileSync(join(host, 'dist', 'assets', f), 'utf8').includes('.aib-block')), 'the block styles are not in the host build');
const entrySize = entry ? statSync(join(host, 'dist', 'assets', entry)).size : 0;
check(js.length > 5, `Mermaid should be lazy chunks of the host build, got only ${js.join(', ')}`);
step(`vite build of the host: entry ${(entrySize / 1024).toFixed(0)} kB, ${js.length} chunks (Mermaid lazy)`);

// -- 4. run it -------------------------------------------------------------------------------------
writeFileSync(
  join(host, 'smoke.mjs'),
  `import { createElement as h } from 'react';
import { renderToString } from 'react-dom/server';
import * as blocks from '@quart-ai-blocks/react';
const html = renderToString(
  h(blocks.AIBlocksProvider, { baseUrl: '/ai' },
    h(blocks.AskQuestionBlock, { topic: 'Photosynthesis' }),
    h(blocks.ExplainELI10Block, { topic: 'Photosynthesis' }),
    h(blocks.QuizBlock, { topic: 'Photosynthesis' }),
    h(blocks.DiagramBlock, { topic: 'Photosynthesis' })));
const seen = (html.match(/class="aib-block"/g) ?? []).length;
if (seen !== 4) throw new Error('expected 4 blocks, got ' + seen + ': ' + html.slice(0, 300));
const calls = [];
const fetch = async (url) => { calls.push(String(url)); return new Response(JSON.stringify({ stream_id: 's1', events_url: '/ai/api/streams/s1/events' }), { status: 201 }); };
const transport = blocks.createTransport('sse-fetch', { baseUrl: '/ai', sse: { fetch } });
const handle = await transport.start({ block_type: 'quiz', input: 'x' }, {});
handle.close();
if (calls[0] !== '/ai/api/streams') throw new Error('start went to ' + calls[0]);
console.log(Object.keys(blocks).length + ' exports; 4 blocks rendered; POST ' + calls[0]);
`,
);
const smoke = run(process.execPath, ['smoke.mjs'], host).trim();
step(`node smoke.mjs: ${smoke}`);

if (process.env.KEEP_PACKAGE_CHECK) console.log(`package check: kept ${work}`);
else rmSync(work, { recursive: true, force: true });
if (failures.length > 0) {
  console.error(`package check FAILED:\n- ${failures.join('\n- ')}`);
  process.exit(1);
}
console.log(`package check: ok in ${((Date.now() - started) / 1000).toFixed(1)}s; files:\n  ${files.join('\n  ')}`);
