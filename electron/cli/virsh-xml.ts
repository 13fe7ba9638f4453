// `vireo dumpxml`, `vireo define` and `vireo edit`: a VM as libvirt domain XML, out and in, with
// virsh's names and messages. The mapping itself is electron/services/libvirt/
// (docs/libvirt-xml.md); these verbs only carry it over the service's socket.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { VerbError, registerVerb } from './virsh';

registerVerb({
  name: 'dumpxml',
  summary: "a VM's definition as libvirt domain XML",
  usage: '<domain>',
  help: "  Prints XML that libvirt's schema accepts (virt-xml-validate FILE domain) and that\n  `virsh define` takes for the same hardware.",
  args: { min: 1, max: 1, names: ['domain'] },
  async run(ctx, _f, [dom]) {
    const vm = await ctx.vm(dom!);
    const { xml, fileName } = await ctx.call('vm.exportXml', { uuid: vm.uuid });
    ctx.out(ctx.json ? JSON.stringify({ name: vm.name, uuid: vm.uuid, fileName, xml }) + '\n' : xml.endsWith('\n') ? xml : `${xml}\n`);
    return 0;
  },
});

registerVerb({
  name: 'define',
  summary: 'define a new VM from libvirt domain XML',
  usage: '<file>',
  help:
    "  Reads what `virsh dumpxml` and `virt-install --print-xml` write. Elements Vireo does\n" +
    '  not take over are listed as warnings, each with its path and why; a UUID or MAC that\n' +
    "  another VM has is replaced (and listed). '-' reads the XML from standard input.",
  args: { min: 1, max: 1, names: ['file'] },
  async run(ctx, _f, [file]) {
    let xml: string;
    try {
      xml = file === '-' ? fs.readFileSync(0, 'utf8') : fs.readFileSync(file!, 'utf8');
    } catch (e) {
      throw new VerbError(`Failed to open file '${file}': ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'No such file or directory' : (e as Error).message}`);
    }
    const r = await ctx.call('vm.importXml', { xml });
    if (r.errors.length || !r.vm) {
      const why = r.errors.map((e) => `${e.field}: ${e.message}`).join('\n') || 'the service defined nothing';
      throw new VerbError(`Failed to define domain from ${file}\n${why}`);
    }
    if (ctx.json) ctx.out(JSON.stringify({ name: r.vm.name, uuid: r.vm.uuid, ignored: r.ignored }, null, 2) + '\n');
    else {
      for (const i of r.ignored) process.stderr.write(`warning: ${i.path}: ${i.reason}\n`);
      ctx.out(`Domain '${r.vm.name}' defined from ${file}\n\n`);
    }
    return 0;
  },
});

/** The editor virsh uses: $VISUAL, then $EDITOR, then vi. */
export function editorCommand(env: NodeJS.ProcessEnv = process.env): string {
  return env.VISUAL || env.EDITOR || 'vi';
}

registerVerb({
  name: 'edit',
  summary: "edit a VM's definition as libvirt domain XML in $EDITOR",
  usage: '<domain>',
  help:
    "  Opens the VM's domain XML (what dumpxml prints) in $VISUAL or $EDITOR (else vi). When\n" +
    '  the editor exits with the file changed, the VM is re-defined from it with the same UUID,\n' +
    "  through the same checks as the app's details editor; on a running VM the change applies\n" +
    '  the next time it starts (as virsh edit changes the persistent definition). A problem is\n' +
    '  shown and, on a terminal, the editor is offered again.',
  args: { min: 1, max: 1, names: ['domain'] },
  async run(ctx, _f, [dom]) {
    const vm = await ctx.vm(dom!);
    const { xml } = await ctx.call('vm.exportXml', { uuid: vm.uuid });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-edit-'));
    const file = path.join(dir, `${vm.name}.xml`);
    fs.writeFileSync(file, xml, { mode: 0o600 });
    try {
      for (;;) {
        const ed = spawnSync('/bin/sh', ['-c', `${editorCommand()} "$1"`, 'sh', file], { stdio: 'inherit' });
        if (ed.error || ed.status !== 0) throw new VerbError(`the editor (${editorCommand()}) failed${ed.error ? `: ${ed.error.message}` : ` with exit status ${ed.status}`}; nothing changed`);
        const edited = fs.readFileSync(file, 'utf8');
        if (edited === xml) {
          ctx.out(ctx.json ? JSON.stringify({ name: vm.name, changed: false }) + '\n' : `Domain '${vm.name}' XML configuration not changed.\n`);
          return 0;
        }
        const r = await ctx.call('vm.updateXml', { uuid: vm.uuid, xml: edited });
        if (!r.errors.length && r.vm) {
          if (ctx.json) ctx.out(JSON.stringify({ name: r.vm.name, uuid: r.vm.uuid, changed: true, nextBoot: r.nextBoot, ignored: r.ignored }, null, 2) + '\n');
          else {
            for (const i of r.ignored) process.stderr.write(`warning: ${i.path}: ${i.reason}\n`);
            ctx.out(`Domain '${r.vm.name}' XML configuration edited.\n${r.nextBoot ? 'It is running: the change applies the next time it starts.\n' : ''}`);
          }
          return 0;
        }
        const why = r.errors.map((e) => `${e.field}: ${e.message}`).join('\n');
        if (!ctx.stdin.isTTY) throw new VerbError(`Failed to edit domain '${vm.name}'\n${why}\nnothing changed`);
        process.stderr.write(`error: ${why}\nFailed. Try again? [y,n]: `);
        if (!/^y/i.test(await readLine(ctx.stdin))) throw new VerbError(`Failed to edit domain '${vm.name}': nothing changed`);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
});

function readLine(stdin: NodeJS.ReadStream): Promise<string> {
  return new Promise((resolve) => {
    const on = (b: Buffer) => {
      stdin.off('data', on);
      stdin.pause();
      resolve(b.toString());
    };
    stdin.on('data', on);
    stdin.resume();
  });
}
