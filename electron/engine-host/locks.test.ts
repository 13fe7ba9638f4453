// Image locks through the real engine (issue 12): a second machine on a disk a running
// machine writes is refused with the file named (also its temporary-changes form), qemu-img
// is kept out, pause and stop leave the qcow2 image clean, and a stopped machine lets go.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { MachineConfig } from '../common/engine-api';
import { addonPath, loadAddon } from './addon';

const BIOS = '/usr/share/seabios/bios.bin';
const haveQemuImg = spawnSync('qemu-img', ['--version']).status === 0;
const why = !fs.existsSync(addonPath())
  ? 'the addon is not built (run scripts/setup.sh)'
  : !fs.existsSync(BIOS)
    ? `${BIOS} is missing`
    : !haveQemuImg
      ? 'qemu-img is not installed'
      : (loadAddon().kvmProblem() ?? '');
if (why) console.log(`SKIP engine lock tests: ${why}`);

describe.skipIf(!!why)('image locks in the engine', () => {
  it('refuses a second writer and a temporary-changes reader, keeps qemu-img out, and lets go after stop', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-locks-'));
    try {
      const disk = path.join(dir, 'd.qcow2');
      execFileSync('qemu-img', ['create', '-f', 'qcow2', disk, '16M']);
      const cfg: MachineConfig = { memoryMiB: 32, cpus: 1, bios: BIOS, vgaBios: '/usr/share/seabios/vgabios-stdvga.bin', disks: [{ path: disk, format: 'qcow2', bus: 'virtio' }] };
      const { Machine } = loadAddon();
      const a = new Machine(cfg);
      a.onState(() => undefined);
      a.onSerial(() => undefined);
      a.start();
      expect(() => new Machine(cfg)).toThrow(new RegExp(`'${disk}' is in use by another process.*open for writing`));
      expect(() => new Machine({ ...cfg, disks: [{ ...cfg.disks![0]!, snapshot: true }] })).toThrow(/is in use by another process/);
      const info = spawnSync('qemu-img', ['info', disk], { encoding: 'utf8' });
      expect(info.status).not.toBe(0);
      expect(info.stderr).toMatch(/Failed to get shared "write" lock/);
      a.pause();
      expect(a.state).toBe('paused');
      // Paused = flushed: a check with -U (we hold the lock) finds the image clean.
      expect(spawnSync('qemu-img', ['check', '-U', disk]).status).toBe(0);
      a.stop();
      expect(spawnSync('qemu-img', ['check', disk]).status).toBe(0);
      const b = new Machine(cfg);
      b.stop();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
