// What the app's binary was started to do, from its argv: open the app's windows, run
// the per-user service headless (--vireo-service, as ensureService starts it), or run
// a `vireo` command headless (list, start, serve, img, …) and exit with its code.
//
// The packaged binary is named `vireo` and its runAsNode fuse is off, so `vireo list`
// typed on a user's machine reaches Electron's main process (main.ts), which asks
// this module. No 'electron' import here: the unit test drives it with plain arrays.

/** The argument that makes the app's binary the headless service (service-bridge.ts). */
export const SERVICE_FLAG = '--vireo-service';

export type LaunchMode =
  /** The desktop app: windows, single-instance lock. */
  | { kind: 'app' }
  /** The per-user service, headless (started by a client's ensureService). */
  | { kind: 'service' }
  /** A `vireo` command, headless: cli/main.ts main(args), then exit with its code. */
  | { kind: 'cli'; args: string[] };

export interface LaunchOptions {
  /**
   * Electron's process.defaultApp: true when an unpackaged app runs as
   * `electron [switches] <app dir> [args]`, whose argv carries the app's path
   * before the user's arguments; false for the packaged `vireo [args]`.
   */
  defaultApp: boolean;
  /** Whether a word is a `vireo` command or verb (cli/main.ts isCommand: the CLI's own table). */
  isCommand: (word: string) => boolean;
}

/** The user's arguments: what follows the binary (and, unpackaged, Electron's switches and the app's path). */
export function userArgs(argv: string[], defaultApp: boolean): string[] {
  let i = 1;
  if (defaultApp) {
    while (i < argv.length && argv[i]!.startsWith('-')) i++; // `electron --no-sandbox . list`
    i++; // the app's path
  }
  return argv.slice(i);
}

/**
 * Decides from process.argv:
 * - SERVICE_FLAG anywhere: the service;
 * - no argument: the app;
 * - Chromium's and Electron's switches (`--no-sandbox`, `--enable-features=…`, as launchers
 *   and AppImage pass them) are passed over; then
 * - a `vireo` command or verb first (list, start, serve, img, …), or help/--help/-h: that
 *   command, with the arguments from there on;
 * - only switches, or a path or URL (the desktop entry's `Exec=vireo %U`): the app, as before;
 * - any other word (`vireo lsit`): the CLI, which says it is an unknown command and exits 2,
 *   rather than a window opening for a typo typed in a terminal.
 */
export function launchMode(argv: string[], o: LaunchOptions): LaunchMode {
  if (argv.includes(SERVICE_FLAG)) return { kind: 'service' };
  const args = userArgs(argv, o.defaultApp);
  // Chromium's and Electron's switches may come first (`vireo --no-sandbox list`, as AppImage needs): not the CLI's.
  const at = args.findIndex((a) => !a.startsWith('-') || HELP.has(a));
  const first = at < 0 ? undefined : args[at];
  if (first === undefined || first === '') return { kind: 'app' };
  if (HELP.has(first) || o.isCommand(first)) return { kind: 'cli', args: args.slice(at) };
  if (/[/\\:.]/.test(first)) return { kind: 'app' };
  return { kind: 'cli', args: args.slice(at) };
}

const HELP = new Set(['--help', '-h', 'help']);

/**
 * Whether a command run by the app's binary must wait for Electron's `ready` before it
 * runs: those that start engine hosts as utility processes in this process (`service`,
 * `serve --standalone`). The others (the verbs, `serve` as a client of the service,
 * `img`, `boot` with the engine in this process) run at once, and need no display.
 */
export function needsAppReady(args: string[]): boolean {
  const [cmd, ...rest] = args;
  if (rest.includes('--help') || rest.includes('-h')) return false;
  if (cmd === 'service') return !rest.some((a) => a === '--status' || a === '--stop');
  return cmd === 'serve' && rest.includes('--standalone');
}
