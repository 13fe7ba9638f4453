#!/usr/bin/env node
// Start → GRUB menu on Debian's GRUB rescue CD (SeaBIOS, El Torito from the
// ATAPI CD-ROM, GRUB's VGA text menu): Vireo (through the native addon, the
// engine the app runs) against QEMU with KVM and, as an extra column, QEMU TCG.
// The menu counts as shown when the text screen has the countdown line
// ("... executed automatically in Ns."): Vireo's screen through the addon's
// screenText(), QEMU's through QMP pmemsave of the 0xb8000 text buffer.
//
//   node bench/pc/grub-menu.mjs [--runs N] [--write-docs]
//
// --write-docs puts the table into docs/benchmarks.md under
// "## PC: start → GRUB menu" (replacing that section only).
// QEMU is a reference peer here, never a runtime dependency of Vireo.
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const ISO = process.env.GRUB_ISO ?? '/usr/lib/grub-rescue/grub-rescue-cdrom.iso';
const BIOS = '/usr/share/seabios/bios.bin';
const VGABIOS = '/usr/share/seabios/vgabios-stdvga.bin';
const ADDON = process.env.VIREO_ADDON ?? path.join(root, 'native', 'build', 'Release', 'vireo_native.node');
const MENU = 'executed automatically';
const LIMIT_S = 240;

const args = process.argv.slice(2);
const runs = Number(args.includes('--runs') ? args[args.indexOf('--runs') + 1] : 1);
const writeDocs = args.includes('--write-docs');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => Number(process.hrtime.bigint()) / 1e9;

// The same CP437 mapping as VgaDevice::text_screen().
function textFromVram(b) {
  const rows = [];
  for (let r = 0; r < 25; r++) {
    let line = '';
    for (let c = 0; c < 80; c++) {
      const ch = b[(r * 80 + c) * 2] ?? 0;
      line += ch >= 0x20 && ch < 0x7f ? String.fromCharCode(ch)
        : ch === 0 ? ' '
        : ch === 0xb3 || ch === 0xba ? '|'
        : ch === 0xc4 || ch === 0xcd ? '-'
        : ch >= 0xb4 && ch <= 0xda ? '+' : '?';
    }
    rows.push(line.trimEnd());
  }
  return rows.join('\n') + '\n';
}

async function vireoRun() {
  const require = createRequire(import.meta.url);
  const addon = require(ADDON);
  const problem = addon.kvmProblem();
  if (problem) throw new Error('Vireo needs /dev/kvm: ' + problem);
  const m = new addon.Machine({
    memoryMiB: 256, bios: BIOS, vgaBios: VGABIOS, bootOrder: 'd',
    disks: [{ path: ISO, format: 'raw', media: 'cdrom', readOnly: true }],
  });
  const t0 = now();
  m.start();
  let welcome = null;
  try {
    for (;;) {
      const t = m.screenText();
      if (welcome === null && t.includes('GNU GRUB')) welcome = now() - t0;
      if (t.includes(MENU)) return { menu: now() - t0, grub: welcome };
      if (now() - t0 > LIMIT_S) throw new Error(`Vireo: no GRUB menu in ${LIMIT_S} s; screen:\n${t}`);
      await sleep(100);
    }
  } finally {
    m.stop();
  }
}

function qmpClient(sock) {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(sock);
    let buf = '';
    const waiters = [];
    s.on('data', (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const msg = JSON.parse(line);
        if (msg.QMP) { resolve(api); continue; }
        if ('return' in msg || 'error' in msg) waiters.shift()?.(msg);
      }
    });
    s.on('error', reject);
    const api = {
      cmd: (execute, args) => new Promise((res, rej) => {
        waiters.push((m) => (m.error ? rej(new Error(JSON.stringify(m.error))) : res(m.return)));
        s.write(JSON.stringify(args ? { execute, arguments: args } : { execute }) + '\n');
      }),
      close: () => s.destroy(),
    };
  });
}

async function qemuRun(accelArgs) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-grubbench-'));
  const sock = path.join(dir, 'qmp.sock');
  const vram = path.join(dir, 'vram.bin');
  const t0 = now();
  // -nic none: Vireo's PC has no NIC yet, and QEMU's default e1000 brings an iPXE ROM that SeaBIOS runs.
  const p = spawn('qemu-system-x86_64', [...accelArgs, '-m', '256', '-nic', 'none', '-cdrom', ISO, '-boot', 'd', '-display', 'none',
    '-serial', 'none', '-qmp', `unix:${sock},server=on,wait=off`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  p.stderr.on('data', (d) => { stderr += d; });
  let q = null;
  try {
    while (!q) {
      if (p.exitCode !== null) throw new Error('qemu exited: ' + stderr);
      try { q = await qmpClient(sock); } catch { await sleep(20); }
    }
    await q.cmd('qmp_capabilities');
    let welcome = null;
    for (;;) {
      await q.cmd('pmemsave', { val: 0xb8000, size: 4000, filename: vram });
      const t = textFromVram(fs.readFileSync(vram));
      if (welcome === null && t.includes('GNU GRUB')) welcome = now() - t0;
      if (t.includes(MENU)) return { menu: now() - t0, grub: welcome };
      if (now() - t0 > LIMIT_S) throw new Error(`QEMU: no GRUB menu in ${LIMIT_S} s; screen:\n${t}`);
      await sleep(100);
    }
  } finally {
    q?.close();
    p.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const fmt = (x) => (x == null || Number.isNaN(x) ? '-' : x.toFixed(1) + ' s');

async function main() {
  for (const f of [ISO, BIOS, VGABIOS]) if (!fs.existsSync(f)) throw new Error(`${f} is missing`);
  const haveQemu = spawnSync('qemu-system-x86_64', ['--version']).status === 0;
  const columns = [['Vireo (KVM)', vireoRun]];
  if (haveQemu) {
    columns.push(['QEMU -enable-kvm', () => qemuRun(['-enable-kvm', '-cpu', 'qemu64,-cx16,-xsave'])]);
    columns.push(['QEMU -accel tcg', () => qemuRun(['-accel', 'tcg'])]);
  } else {
    console.error('qemu-system-x86_64 not found: Vireo column only');
  }
  // Runs interleaved, so that a noisy neighbour hits every column alike.
  const load0 = os.loadavg()[0];
  const results = Object.fromEntries(columns.map(([name]) => [name, []]));
  for (let i = 0; i < runs; i++) {
    for (const [name, fn] of columns) {
      const r = await fn();
      console.error(`${name} run ${i + 1}: "GNU GRUB" at ${fmt(r.grub)}, menu countdown at ${fmt(r.menu)}`);
      results[name].push(r);
    }
  }
  const med = (name, key) => (results[name] ? median(results[name].map((r) => r[key] ?? NaN)) : null);
  const host = `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, Linux ${os.release()}`;
  // One row per measurement, Vireo first and QEMU-KVM (the peer) second, as bench/run.sh's summary reads it.
  let table = '| measurement | Vireo | QEMU-KVM | QEMU TCG | Vireo ÷ QEMU-KVM |\n|---|---|---|---|---|\n';
  for (const [label, key] of [['start → "GNU GRUB" on screen', 'grub'], ['start → menu with countdown', 'menu']]) {
    const v = med('Vireo (KVM)', key), k = med('QEMU -enable-kvm', key), t = med('QEMU -accel tcg', key);
    table += `| ${label} | ${fmt(v)} | ${fmt(k)} | ${fmt(t)} | ${k ? (v / k).toFixed(2) + '×' : '-'} |\n`;
  }
  const perRun = columns.map(([name]) => `${name} ${results[name].map((r) => r.menu.toFixed(1)).join(' / ')} s`).join('; ');
  const load = `load average ${load0.toFixed(1)} at the start, ${os.loadavg()[0].toFixed(1)} at the end`;
  console.log(table);
  console.log(`menu with countdown, run by run: ${perRun} (${load})`);
  if (writeDocs) writeSection(table, host, perRun, load);
}

function writeSection(table, host, perRun, load) {
  const file = path.join(root, 'docs', 'benchmarks.md');
  const heading = '## PC: start → GRUB menu';
  const kvm = fs.existsSync('/sys/module/kvm_pvm') ? 'a kvm_pvm host (guest ring-0 code, i.e. SeaBIOS and GRUB, is emulated instruction by instruction)' : 'a host with hardware KVM';
  const section = `${heading}

Debian's GRUB rescue CD (\`/usr/lib/grub-rescue/grub-rescue-cdrom.iso\`), 256 MiB,
booted by SeaBIOS from the ATAPI CD-ROM, from process start until GRUB's menu
shows its countdown on the VGA text screen (median of ${runs} run${runs > 1 ? 's' : ''};
runs interleaved; screens polled every 100 ms). Measured on ${kvm}: ${host},
${new Date().toISOString().slice(0, 10)}, with \`node bench/pc/grub-menu.mjs --runs ${runs} --write-docs\`.
QEMU-KVM runs \`-enable-kvm -cpu qemu64,-cx16,-xsave\` (the CPU model this host's
KVM can run) with \`-nic none\` (Vireo's PC has no NIC yet; QEMU's default e1000
would add an iPXE ROM for SeaBIOS to run); QEMU TCG (\`-accel tcg\`, no KVM) is an extra column for scale.
Vireo runs through the native addon in a plain Node process (\`new Machine()\`,
\`screenText()\` polled), as the app's engine host runs it; QEMU's screen is read
through QMP (\`pmemsave\` of 0xb8000).

${table}
Menu with countdown, run by run: ${perRun}. The host was shared (${load} on
2 cores), so single runs spread widely; the medians of interleaved runs are
what to compare.

On a kvm_pvm host every ring-0 instruction of the firmware and of GRUB is
emulated, so both KVM columns measure that emulation rather than the engines;
the ratio against QEMU-KVM is the comparable figure. On hardware VT-x/AMD-V
both run at native speed.
`;
  let text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# Benchmarks\n';
  const start = text.indexOf(heading);
  if (start >= 0) {
    const next = text.indexOf('\n## ', start + heading.length);
    text = text.slice(0, start) + section + (next >= 0 ? '\n' + text.slice(next + 1) : '');
  } else {
    text = text.replace(/\n*$/, '\n\n') + section;
  }
  fs.writeFileSync(file, text);
  console.error(`wrote the section "${heading}" of ${file}`);
}

main().catch((e) => { console.error(e.message ?? e); process.exit(1); });
