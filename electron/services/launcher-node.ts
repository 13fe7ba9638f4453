// Starts an engine host as a plain Node child process (vireo serve, tests). Under
// Electron, electron/main/launcher-utility.ts does the same with utilityProcess.
import { fork } from 'node:child_process';
import * as path from 'node:path';
import type { HostChannel, Launcher } from './supervisor';

/** dist/electron/services -> dist/electron/engine-host/main.js */
export function defaultHostEntry(): string {
  return path.join(__dirname, '..', 'engine-host', 'main.js');
}

export function nodeLauncher(entry = defaultHostEntry(), env: NodeJS.ProcessEnv = process.env): Launcher {
  return (vmUuid) => {
    const child = fork(entry, ['--vm', vmUuid], {
      serialization: 'advanced', // structured clone: Uint8Array crosses without base64
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env,
    });
    const ch: HostChannel = {
      get pid() {
        return child.pid;
      },
      send: (msg) => {
        if (child.connected) child.send(msg);
      },
      onMessage: (cb) => child.on('message', cb),
      onExit: (cb) => child.on('exit', (code, signal) => cb(code, signal)),
      kill: (sig) => {
        if (child.exitCode === null && child.signalCode === null) child.kill(sig);
      },
    };
    child.on('error', () => undefined);
    return ch;
  };
}
