// Unit tests: `npx vitest run` (electron/** and renderer/src/**; e2e has its own config).
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['electron/**/*.test.ts', 'renderer/src/**/*.test.ts'],
    exclude: ['node_modules/**', 'dist/**', 'e2e/**'],
    environment: 'node',
    pool: 'forks',
    maxWorkers: 1,
    testTimeout: 20000,
  },
});
