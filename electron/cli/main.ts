// `vireo` command-line dispatcher. Each subcommand lives in its own module and
// exports `run(args: string[]): Promise<number>` (the process exit code).

type Sub = { summary: string; load: () => { run(args: string[]): Promise<number> } };

const commands: Record<string, Sub> = {
  boot: { summary: 'run a VM headless with the serial console on this terminal', load: () => require('./boot') },
  serve: { summary: 'serve the Vireo UI to a browser on 127.0.0.1 (token-protected)', load: () => require('./serve') },
  img: { summary: 'create, inspect, check, convert and snapshot disk images', load: () => require('./img') },
};

export function usage(): string {
  const lines = ['usage: vireo <command> [options]', '', 'commands:'];
  for (const [name, c] of Object.entries(commands)) lines.push(`  ${name.padEnd(8)} ${c.summary}`);
  lines.push('', 'Run `vireo <command> --help` for its options.');
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    console.log(usage());
    return cmd ? 0 : 2;
  }
  const sub = commands[cmd];
  if (!sub) {
    console.error(`vireo: unknown command '${cmd}'\n\n${usage()}`);
    return 2;
  }
  return sub.load().run(rest);
}
