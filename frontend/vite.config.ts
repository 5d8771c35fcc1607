import react from '@vitejs/plugin-react';
import { defineConfig } from 'vitest/config';

const backend = process.env.BACKEND_URL ?? 'http://127.0.0.1:8000';

export default defineConfig({
  base: '/',
  plugins: [react()],
  // The page is served with a fresh nonce in place of this (quartapp/blueprints/pages.py): Vite puts it on
  // the tags it writes and in <meta property="csp-nonce">, where mermaidRender.ts finds it for Mermaid's sheet.
  html: { cspNonce: '__CSP_NONCE__' },
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    sourcemap: false,
    // The chunks above 500 kB are Mermaid's (cytoscape, its diagram core), loaded only
    // when a diagram is drawn; the page's own entry is about 440 kB (136 kB gzipped).
    chunkSizeWarningLimit: 700,
  },
  server: {
    // Host stays the page's (changeOrigin off): the backend only lets the page's own origin
    // (Origin == scheme://Host) start streams and open the socket, unless ALLOWED_ORIGINS says more.
    proxy: {
      '/api': { target: backend, changeOrigin: false },
      '/ws': { target: backend, ws: true, changeOrigin: false },
    },
  },
  test: {
    environment: 'jsdom',
    setupFiles: ['./src/test/setup.ts'],
    include: ['src/**/*.test.{ts,tsx}'],
    restoreMocks: true,
    pool: 'threads',
    maxWorkers: 2,
  },
});
