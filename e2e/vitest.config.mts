// End-to-end tests: `npx vitest run --config e2e/vitest.config.ts` after building
// dist/ (tsc) and dist/renderer (vite). One file at a time: each starts its own
// `vireo serve` and Chromium.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: fileURLToPath(new URL('..', import.meta.url)),
    include: ['e2e/**/*.spec.ts'],
    environment: 'node',
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
    testTimeout: 180000,
    hookTimeout: 60000,
  },
});
