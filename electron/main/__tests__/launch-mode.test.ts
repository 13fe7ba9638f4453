// What the app's binary does with its argv (launch-mode.ts), and the runtime hook
// that makes a command run by the app start the service as the app's binary
// (cli/runtime.ts). cli/main.ts loads its verb modules with require(), which vitest
// cannot follow into TypeScript, so isCommand here is cli/main.ts's table rebuilt
// from the same modules (the verbs they register in VERBS, and its four commands);
// e2e/electron.spec.ts runs the real app binary with verbs where one is installed.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { setCliRuntime } from '../../cli/runtime';
import { VERBS, runVerb } from '../../cli/virsh';
import '../../cli/virsh-net';
import '../../cli/virsh-snapshot';
import { SERVICE_FLAG, launchMode, needsAppReady, userArgs } from '../launch-mode';

const isCommand = (w: string) => ['boot', 'serve', 'img', 'service'].includes(w) || VERBS.has(w);
const packaged = (...args: string[]) => launchMode(['/opt/Vireo/vireo', ...args], { defaultApp: false, isCommand });
const fromSource = (...args: string[]) => launchMode(['/x/node_modules/electron/dist/electron', ...args], { defaultApp: true, isCommand });

describe('launchMode', () => {
  it('opens the app with no argument', () => {
    expect(packaged()).toEqual({ kind: 'app' });
    expect(fromSource('.')).toEqual({ kind: 'app' });
    expect(fromSource('--no-sandbox', '/src/vireo')).toEqual({ kind: 'app' });
  });

  it('runs a vireo verb or command headless, with its arguments', () => {
    expect(packaged('list', '--all')).toEqual({ kind: 'cli', args: ['list', '--all'] });
    expect(packaged('start', 'web')).toEqual({ kind: 'cli', args: ['start', 'web'] });
    expect(packaged('net-list')).toEqual({ kind: 'cli', args: ['net-list'] });
    expect(packaged('snapshot-list', 'web')).toEqual({ kind: 'cli', args: ['snapshot-list', 'web'] });
    expect(packaged('serve', '--port', '8080')).toEqual({ kind: 'cli', args: ['serve', '--port', '8080'] });
    expect(packaged('img', 'info', '/tmp/a.qcow2')).toEqual({ kind: 'cli', args: ['img', 'info', '/tmp/a.qcow2'] });
    expect(packaged('boot', '--kernel', 'k.bin')).toEqual({ kind: 'cli', args: ['boot', '--kernel', 'k.bin'] });
    // An unpackaged app: the user's arguments follow Electron's switches and the app's path.
    expect(fromSource('.', 'list')).toEqual({ kind: 'cli', args: ['list'] });
    expect(fromSource('--no-sandbox', '/src/vireo', 'destroy', 'web')).toEqual({ kind: 'cli', args: ['destroy', 'web'] });
    // Chromium's switches before the verb are not the verb's.
    expect(packaged('--no-sandbox', 'list', '--all')).toEqual({ kind: 'cli', args: ['list', '--all'] });
    expect(fromSource('.', '--no-sandbox', 'list')).toEqual({ kind: 'cli', args: ['list'] });
  });

  it('runs the CLI for help', () => {
    for (const h of ['--help', '-h', 'help']) expect(packaged(h)).toEqual({ kind: 'cli', args: [h] });
    expect(packaged('--no-sandbox', '--help')).toEqual({ kind: 'cli', args: ['--help'] });
    expect(packaged('list', '--help')).toEqual({ kind: 'cli', args: ['list', '--help'] });
  });

  it('opens the app for switches, paths and URLs (the desktop entry passes %U)', () => {
    expect(packaged('--no-sandbox')).toEqual({ kind: 'app' });
    expect(packaged('--enable-features=UseOzonePlatform', '/home/me/a.iso')).toEqual({ kind: 'app' });
    expect(packaged('/home/me/debian.iso')).toEqual({ kind: 'app' });
    expect(packaged('file:///home/me/debian.iso')).toEqual({ kind: 'app' });
    expect(packaged('debian.iso')).toEqual({ kind: 'app' });
  });

  it('gives any other word to the CLI, which refuses it (no window for a typo)', () => {
    expect(packaged('lsit')).toEqual({ kind: 'cli', args: ['lsit'] });
    expect(packaged('constructor')).toEqual({ kind: 'cli', args: ['constructor'] });
  });

  it('runs the service for --vireo-service, wherever it is', () => {
    expect(packaged(SERVICE_FLAG)).toEqual({ kind: 'service' });
    expect(fromSource('/src/vireo', SERVICE_FLAG)).toEqual({ kind: 'service' });
    expect(packaged('list', SERVICE_FLAG)).toEqual({ kind: 'service' });
  });

  it('userArgs skips the binary, and unpackaged Electron switches and the app path', () => {
    expect(userArgs(['vireo', 'a', 'b'], false)).toEqual(['a', 'b']);
    expect(userArgs(['electron', '--inspect', '.', 'a'], true)).toEqual(['a']);
    expect(userArgs(['electron'], true)).toEqual([]);
  });
});

describe('needsAppReady', () => {
  it('waits for ready only where engine hosts are utility processes of this process', () => {
    expect(needsAppReady(['service'])).toBe(true);
    expect(needsAppReady(['service', '--idle', '0'])).toBe(true);
    expect(needsAppReady(['serve', '--standalone'])).toBe(true);
    expect(needsAppReady(['service', '--stop'])).toBe(false);
    expect(needsAppReady(['service', '--status'])).toBe(false);
    expect(needsAppReady(['service', '--help'])).toBe(false);
    expect(needsAppReady(['serve'])).toBe(false);
    expect(needsAppReady(['list', '--all'])).toBe(false);
    expect(needsAppReady(['boot', '--kernel', 'k'])).toBe(false);
  });
});

describe('the CLI run by the app', () => {
  const saved = { ...process.env };
  afterEach(() => {
    setCliRuntime({});
    process.env = { ...saved };
    vi.restoreAllMocks();
  });

  it("starts the service with the runtime's command (the app's binary), not node bin/vireo.js", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-launch-'));
    try {
      Object.assign(process.env, { HOME: dir, XDG_CONFIG_HOME: path.join(dir, 'c'), XDG_DATA_HOME: path.join(dir, 'd'), XDG_RUNTIME_DIR: path.join(dir, 'r') });
      // A stand-in for the app's binary that exits at once: the verb must report that.
      setCliRuntime({ serviceCommand: { file: '/bin/sh', args: ['-c', 'echo app-binary-started; exit 3'] } });
      const err = vi.spyOn(console, 'error').mockImplementation(() => undefined);
      expect(await runVerb('list', ['--all'])).toBe(1);
      expect(err.mock.calls.flat().join('\n')).toContain('the Vireo service exited at once (code 3)');
      expect(fs.readFileSync(path.join(dir, 'd', 'vireo', 'logs', 'service.log'), 'utf8')).toContain('app-binary-started');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
