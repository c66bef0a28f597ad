import { defineConfig } from 'vite';

// Built by `npm run build:web` (scripts/build-web) into web/dist, which the API serves at / (WEB_DIR).
// Everything the page loads is in that directory: no CDN, no runtime fetches but the API's own.
export default defineConfig({
  base: '/',
  // Preact's automatic JSX runtime (Vite 8 transforms TypeScript and JSX with Oxc).
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    target: 'es2022',
    // Small enough that inlining them as data: URLs would only defeat caching of the app's one icon.
    assetsInlineLimit: 0,
  },
  server: {
    // `npx vite web` during development: the API (npm start) answers everything but the page itself.
    proxy: Object.fromEntries(['/auth', '/videos', '/analytics', '/admin', '/openapi.json'].map((path) => [path, 'http://127.0.0.1:3000'])),
  },
});
