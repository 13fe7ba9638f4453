// Start → init prompt on serial for the Linux test guest (resources/linux-guest):
// Vireo (`vireo boot`) vs QEMU-KVM vs QEMU TCG, the same kernel and initramfs
// and the same command line, no disks, init's checks off (vireo.checks=none):
// the clock stops when the shell prompt "vireo-guest# " arrives on stdout.
//
//   npx tsc -p tsconfig.json && node dist/bench/linux-boot/bench.js [--runs N] [--limit S] [--kernel vmlinux|bzimage] [--only vireo,qemu-kvm,qemu-tcg]
//
// Default kernel: the decompressed vmlinux (PVH entry) for all three, since the
// bzImage's decompressor is ring-0 code a kvm_pvm host emulates. Each run is
// bounded by --limit (default 300 s); a run that does not reach the prompt is
// reported with where it stopped (last serial line, the VMM's last message).
// QEMU is a reference peer here, never a runtime dependency of Vireo.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type BootSpec, ROOT, type RunResult, buildGuest, lastLine, qemuArgs, runGuest, vireoArgs, which } from './guest';

const argv = process.argv.slice(2);
const opt = (k: string, d: string) => (argv.includes(k) ? argv[argv.indexOf(k) + 1]! : d);
const runs = Number(opt('--runs', '1'));
const limit = Number(opt('--limit', '300'));
const kernelKind = opt('--kernel', 'vmlinux');
const only = opt('--only', 'vireo,qemu-kvm,qemu-tcg').split(',');
const jsonOut = argv.includes('--json') ? opt('--json', '') : '';

const build = buildGuest();
if (typeof build === 'string') {
  console.error(`bench/linux-boot: cannot build the guest: ${build}`);
  process.exit(1);
}
const spec: BootSpec = {
  path: 'kernel', memoryMiB: 512, cpus: 1, kernel: kernelKind === 'bzimage' ? build.vmlinuz : build.vmlinux,
  append: 'console=ttyS0 vireo.checks=none',
};
const qemu = which('qemu-system-x86_64');
// QEMU keeps a VM stopped after a KVM internal error (this kvm_pvm host: the first XRSTOR) until it is killed.
const engines: Array<{ name: string; cmd: string; args: string[]; stopOnStderr?: string }> = [];
if (only.includes('vireo')) engines.push({ name: 'Vireo (vireo boot)', cmd: process.execPath, args: [path.join(ROOT, 'bin', 'vireo.js'), 'boot', ...vireoArgs(spec, build, limit)] });
if (qemu && only.includes('qemu-kvm')) engines.push({ name: 'QEMU-KVM', cmd: qemu, args: qemuArgs(spec, build, 'kvm'), stopOnStderr: 'KVM internal error' });
if (qemu && only.includes('qemu-tcg')) engines.push({ name: 'QEMU TCG', cmd: qemu, args: qemuArgs(spec, build, 'tcg') });

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN; };

(async () => {
  const res: Record<string, RunResult[]> = {};
  for (let i = 0; i < runs; i++) {
    for (const e of engines) {
      process.stderr.write(`[linux-boot] ${e.name}, run ${i + 1}/${runs} (limit ${limit} s)\n`);
      const r = await runGuest(e.cmd, e.args, { limitS: limit + 10, killAtPrompt: true, stopOnStderr: e.stopOnStderr });
      (res[e.name] ??= []).push(r);
      process.stderr.write(`[linux-boot]   first byte ${r.t.firstByte?.toFixed(2) ?? '-'} s, init ${r.t.init?.toFixed(2) ?? '-'} s, prompt ${r.t.prompt?.toFixed(2) ?? '-'} s, end ${r.t.end.toFixed(1)} s\n`);
    }
  }
  const kvm = fs.existsSync('/sys/module/kvm_pvm') ? 'kvm_pvm' : 'hardware KVM';
  const qk = median((res['QEMU-KVM'] ?? []).filter((r) => r.t.prompt !== undefined).map((r) => r.t.prompt!));
  const qt = median((res['QEMU TCG'] ?? []).filter((r) => r.t.prompt !== undefined).map((r) => r.t.prompt!));
  console.log(`Kernel ${build.kver} (${kernelKind}), initramfs ${path.basename(build.initramfs)}, 512 MiB, 1 vCPU, host ${kvm}, ${runs} run(s) each, limit ${limit} s\n`);
  console.log('| engine | first serial byte | init started | init prompt (median) | ÷ QEMU-KVM | ÷ QEMU TCG | where it stopped (runs without a prompt) |');
  console.log('|---|---|---|---|---|---|---|');
  const json: Record<string, unknown> = {};
  for (const e of engines) {
    const rs = res[e.name]!;
    const ok = rs.filter((r) => r.t.prompt !== undefined);
    const f = (xs: Array<number | undefined>) => { const v = xs.filter((x): x is number => x !== undefined); return v.length ? `${median(v).toFixed(2)} s` : '–'; };
    const p = median(ok.map((r) => r.t.prompt!));
    const stops = rs.filter((r) => r.t.prompt === undefined).map((r) => {
      const lines = r.stderr.trim().split('\n').filter(Boolean);
      const msg = (r.stoppedOn ? lines.find((l) => l.includes(r.stoppedOn!)) : undefined) ?? lines.slice(-1)[0] ?? '';
      return `after ${r.t.end.toFixed(0)} s: "${lastLine(r.serial).slice(0, 90)}"${msg ? `; ${msg.slice(0, 160)}` : ''}`;
    });
    console.log(`| ${e.name} | ${f(rs.map((r) => r.t.firstByte))} | ${f(rs.map((r) => r.t.init))} | ${ok.length ? `${p.toFixed(2)} s (${ok.length}/${rs.length})` : `none of ${rs.length}`} | ${ok.length && qk ? `${(p / qk).toFixed(2)}×` : '–'} | ${ok.length && qt ? `${(p / qt).toFixed(1)}×` : '–'} | ${stops.join('<br>') || '–'} |`);
    json[e.name] = rs.map((r) => ({ t: r.t, last: lastLine(r.serial), stderr: r.stderr.slice(-2000), exit: r.exitCode, killed: r.killed }));
  }
  if (jsonOut) fs.writeFileSync(jsonOut, JSON.stringify(json, null, 1));
})();
