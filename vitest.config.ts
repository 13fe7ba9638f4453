// Unit tests: `npx vitest run` (electron/** and renderer/src/**; e2e has its own config).
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['electron/**/*.test.ts', 'renderer/src/**/*.test.ts'],
    exclude: ['node_modules/**', 'dist/**', 'e2e/**'],
    environment: 'node',
    pool: 'forks',
    // Two files at a time (the hosts have 2 cores): the engine boots in electron/cli/boot.test.ts
    // spend most of their time in one vCPU thread.
    maxWorkers: 2,
    testTimeout: 20000,
  },
});
