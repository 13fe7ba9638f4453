// `vireo dumpxml` and `vireo define`: a VM as libvirt domain XML, out and in, with
// virsh's names and messages. The mapping itself is electron/services/libvirt/
// (docs/libvirt-xml.md); these verbs only carry it over the service's socket.
import * as fs from 'node:fs';
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
