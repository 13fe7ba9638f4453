// Helper processes (cp, vireo-img) die with the service that started them, so that a
// killed service leaves no copy or image change running on behind the next start's
// recovery (issue 15, finding 9).
//
// PR_SET_PDEATHSIG (set by util-linux's setpriv before it execs the command) kills the
// helper when its parent dies, but only if the parent is still alive when it is set:
// Node forks a child and the child execs setpriv a moment later (much later on a loaded
// host), and a service killed in between leaves a helper that sets the signal for a
// parent already gone. It was reparented, no signal comes, and it runs to its end
// unsupervised: a full copy writing its hidden temporary after the next start swept them.
// So a small shell guard runs after setpriv and before the command: it checks that its
// parent is still the process that started it and, if not, exits 125 without running it.
// After the guard's check a parent death is caught by the signal set before it.
import { spawnSync } from 'node:child_process';

let setpriv: boolean | undefined;

/** Exit status of a helper whose parent was gone before it started. */
export const ORPHANED = 125;

const GUARD = `[ "$PPID" = "$0" ] || exit ${ORPHANED}; exec "$@"`;

/**
 * `cmd args` made to die with `parent` (this process: the one that spawns it) where
 * setpriv exists; elsewhere the command as it is.
 */
export function dieWithParent(cmd: string, args: string[], parent = process.pid): [string, string[]] {
  setpriv ??= spawnSync('setpriv', ['--pdeathsig', 'KILL', '--', 'true'], { stdio: 'ignore' }).status === 0;
  return setpriv ? ['setpriv', ['--pdeathsig', 'KILL', '--', '/bin/sh', '-c', GUARD, String(parent), cmd, ...args]] : [cmd, args];
}
