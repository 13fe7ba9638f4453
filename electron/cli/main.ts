// `vireo` command-line dispatcher. Each subcommand lives in its own module and
// exports `run(args: string[]): Promise<number>` (the process exit code).

type Sub = { summary: string; load: () => { run(args: string[]): Promise<number> } };

const commands: Record<string, Sub> = {
  boot: { summary: 'run a VM headless with the serial console on this terminal', load: () => require('./boot') },
  serve: { summary: 'serve the Vireo UI to a browser on 127.0.0.1 (token-protected)', load: () => require('./serve') },
  img: { summary: 'create, inspect, check, convert and snapshot disk images', load: () => require('./img') },
  service: { summary: 'the per-user service that owns the VMs (clients start it)', load: () => require('./service') },
};

/** The virsh-like verbs on the service's VMs (cli/virsh.ts and the files that register more). */
function verbs(): Map<string, { summary: string }> {
  const virsh = require('./virsh') as typeof import('./virsh');
  require('./virsh-xml'); // dumpxml, define, edit
  require('./virt-install'); // install
  require('./virt-clone'); // clone
  require('./virsh-net'); // net-*
  require('./virsh-dom'); // domifaddr, domiflist, domblklist, domifstat, domif-getlink, domif-setlink
  require('./virsh-storage'); // vol-create-as, vol-delete, pool-define-as, pool-undefine
  require('./virsh-autostart'); // autostart
  require('./virsh-managedsave'); // managedsave, managedsave-remove
  require('./virsh-snapshot'); // snapshot-create-as, snapshot-list, snapshot-revert, snapshot-delete, snapshot-current
  return virsh.VERBS;
}

/** Whether `word` is a `vireo` command or verb: the table main() dispatches on (the app's launch-mode.ts asks too). */
export function isCommand(word: string): boolean {
  return Object.hasOwn(commands, word) || verbs().has(word);
}

export function usage(): string {
  const lines = ['usage: vireo <command> [options]', '', 'commands:'];
  for (const [name, c] of Object.entries(commands)) lines.push(`  ${name.padEnd(8)} ${c.summary}`);
  lines.push('', 'commands on the VMs of the Vireo service (like virsh):');
  for (const [name, v] of verbs()) lines.push(`  ${name.padEnd(10)} ${v.summary}`);
  lines.push('', 'Run `vireo <command> --help` for its options.');
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    console.log(usage());
    return cmd ? 0 : 2;
  }
  const sub = Object.hasOwn(commands, cmd) ? commands[cmd] : undefined;
  if (!sub && verbs().has(cmd)) return (require('./virsh') as typeof import('./virsh')).runVerb(cmd, rest);
  if (!sub) {
    console.error(`vireo: unknown command '${cmd}'\n\n${usage()}`);
    return 2;
  }
  return sub.load().run(rest);
}
