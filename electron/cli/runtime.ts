// Where the `vireo` commands run: under Node (bin/vireo.js), or in the packaged app's
// main process (electron/main/main.ts, launch-mode.ts), whose runAsNode fuse is off.
// Under Node the defaults hold: the service is `node bin/vireo.js service` and engine
// hosts are forked Node processes. The app sets its own before it runs a command: the
// service is its binary with --vireo-service, engine hosts are utility processes.
// No 'electron' import here.
import { nodeLauncher } from '../services/launcher-node';
import type { Launcher } from '../services/supervisor';

export interface CliRuntime {
  /** How a client starts the service when none runs (service-host.ts ensureService's `command`). */
  serviceCommand?: { file: string; args: string[]; env?: NodeJS.ProcessEnv };
  /** Engine hosts for a service run by this process (`vireo service`, `vireo serve --standalone`). */
  launcher?: () => Launcher;
}

let current: CliRuntime = {};

export function setCliRuntime(r: CliRuntime): void {
  current = r;
}

/** ensureService's command: undefined under Node (its default, `node bin/vireo.js service`). */
export function cliServiceCommand(): CliRuntime['serviceCommand'] {
  return current.serviceCommand;
}

export function cliLauncher(): Launcher {
  return current.launcher ? current.launcher() : nodeLauncher();
}
