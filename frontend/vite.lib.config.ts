/**
 * The library build of `@quart-ai-blocks/react` (package/): `npm run build:package`.
 *
 * One ESM file, `package/dist/index.js`, from `src/index.ts`. React, react-dom, mermaid (peers) and the
 * runtime dependencies stay imports, resolved by the host's bundler (one React, Mermaid still a lazy
 * chunk of the host's build). `src/components/blocks.css` is copied as `dist/styles.css`; the types
 * come from `tsc -p tsconfig.lib.json`, run after this build.
 */
import { readFileSync } from 'node:fs';
import react from '@vitejs/plugin-react';
import { defineConfig, type Plugin } from 'vite';

const manifest = JSON.parse(readFileSync(new URL('./package/package.json', import.meta.url), 'utf8')) as {
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
};
const external = [...Object.keys(manifest.peerDependencies ?? {}), ...Object.keys(manifest.dependencies ?? {})];

/** `react`, `react/jsx-runtime`, `mermaid`, `react-markdown`...: anything the manifest declares. */
export function isExternal(id: string): boolean {
  return external.some((name) => id === name || id.startsWith(`${name}/`));
}

const styles: Plugin = {
  name: 'aib-styles',
  generateBundle() {
    this.emitFile({
      type: 'asset',
      fileName: 'styles.css',
      source: readFileSync(new URL('./src/components/blocks.css', import.meta.url), 'utf8'),
    });
  },
};

export default defineConfig({
  plugins: [react(), styles],
  publicDir: false,
  build: {
    outDir: 'package/dist',
    emptyOutDir: true,
    copyPublicDir: false,
    sourcemap: true,
    minify: false,
    target: 'es2022',
    lib: {
      entry: 'src/index.ts',
      formats: ['es'],
      fileName: 'index',
    },
    rolldownOptions: {
      external: isExternal,
    },
  },
});
