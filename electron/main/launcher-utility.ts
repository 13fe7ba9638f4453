// Starts an engine host in an Electron utility process (one per running VM).
import * as path from 'node:path';
import { type MessagePortMain, utilityProcess } from 'electron';
import type { HostChannel, Launcher } from '../services/supervisor';

export function utilityLauncher(entry = path.join(__dirname, '..', 'engine-host', 'main.js')): Launcher {
  return (vmUuid) => {
    const child = utilityProcess.fork(entry, ['--vm', vmUuid], { serviceName: `Vireo VM ${vmUuid}`, stdio: 'inherit' });
    let killedWith: string | null = null;
    let exited = false;
    const ch: HostChannel = {
      get pid() {
        return child.pid;
      },
      send: (msg) => {
        if (!exited) child.postMessage(msg);
      },
      onMessage: (cb) => child.on('message', cb),
      onExit: (cb) =>
        child.on('exit', (code) => {
          exited = true;
          cb(killedWith ? null : code, killedWith);
        }),
      kill: (sig) => {
        if (exited || child.pid === undefined) return;
        killedWith = sig;
        process.kill(child.pid, sig);
      },
      attachPort: (sid, port) => {
        if (!exited) child.postMessage({ t: 'attachPort', sid }, [port as MessagePortMain]);
      },
    };
    return ch;
  };
}
