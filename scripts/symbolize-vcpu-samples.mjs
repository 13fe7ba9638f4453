#!/usr/bin/env node
// Annotates the engine's VIREO_SAMPLE_VCPUS lines (or any text) with kernel
// symbols: every 16-digit hex address in the top 2 GiB (0xffffffff8…) gets
// `<symbol+0xoff>` after it, from a System.map (text symbols only).
//   node scripts/symbolize-vcpu-samples.mjs [System.map] < stderr.log
// Default map: the newest /boot/System.map-* (the Linux test guest is built
// from the host's newest kernel, resources/linux-guest/build.sh). The guest
// must run without KASLR (a vmlinux PVH boot has none).
import * as fs from 'node:fs';
import * as readline from 'node:readline';

function newestMap() {
  const maps = fs.existsSync('/boot') ? fs.readdirSync('/boot').filter((f) => f.startsWith('System.map-')) : [];
  maps.sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  return maps.length ? `/boot/${maps[maps.length - 1]}` : undefined;
}

export function loadMap(text) {
  const syms = [];
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]{16}) ([tTwW]) (\S+)/.exec(line);
    if (m) syms.push({ addr: BigInt('0x' + m[1]), name: m[3] });
  }
  syms.sort((a, b) => (a.addr < b.addr ? -1 : a.addr > b.addr ? 1 : 0));
  return syms;
}

export function lookup(syms, addr) {
  let lo = 0;
  let hi = syms.length - 1;
  let best = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (syms[mid].addr <= addr) {
      best = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  if (best < 0) return undefined;
  const off = addr - syms[best].addr;
  if (off > 0x100000n) return undefined; // past the last text symbol: data, not code
  return `${syms[best].name}+0x${off.toString(16)}`;
}

export function annotate(syms, line) {
  return line.replace(/\b(ffffffff[89a-f][0-9a-f]{7})\b/g, (hex) => {
    const s = lookup(syms, BigInt('0x' + hex));
    return s ? `${hex}<${s}>` : hex;
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const mapPath = process.argv[2] ?? newestMap();
  if (!mapPath || !fs.existsSync(mapPath)) {
    console.error(`symbolize-vcpu-samples: no System.map (${mapPath ?? 'none in /boot'}); pass its path`);
    process.exit(2);
  }
  const syms = loadMap(fs.readFileSync(mapPath, 'utf8'));
  if (!syms.length) {
    console.error(`symbolize-vcpu-samples: ${mapPath} has no text symbols`);
    process.exit(2);
  }
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  rl.on('line', (l) => process.stdout.write(annotate(syms, l) + '\n'));
}
