// The hardware details editor's checks: every problem with an edit, tied to its field,
// and the definition it becomes. Writes nothing (the store writes, atomically).
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { type DetailsFieldError, type Disk, MAC_PATTERN, displayProblem, isDefaultDisplay, OS_CHOICES, type VmDefinition, type VmEdit, nameProblem } from '../common/contracts/vm';
import { serialLogPath } from './file-access';
import type { VmStore } from './vm-store';

/** IDE has two channels with two devices each (the PIIX3 of our PC board). */
export const MAX_IDE = 4;
export const MAX_VIRTIO = 8;

export interface EditContext {
  store: VmStore;
  host: { cpus: number; memoryMiB: number };
  /** Vireo's log directory: the only place a serial log may be (file-access.ts). */
  logsDir: string;
  /** Checks a newly attached disk's backing chain as the engine will open it: a problem, or null. */
  chainProblem?: (p: string, format: 'raw' | 'qcow2') => Promise<string | null>;
  /** Whether a network of that name is defined (networks.ts); absent: any name is accepted. */
  networkExists?: (name: string) => boolean;
}

type Probe = { kind: 'file' | 'directory' | 'other' | 'missing'; qcow2: boolean };

async function probe(p: string): Promise<Probe> {
  try {
    const st = await fs.stat(p);
    if (!st.isFile()) return { kind: st.isDirectory() ? 'directory' : 'other', qcow2: false };
    const fh = await fs.open(p, 'r');
    try {
      const b = Buffer.alloc(4);
      await fh.read(b, 0, 4, 0);
      return { kind: 'file', qcow2: b.toString('latin1') === 'QFI\xfb' };
    } finally {
      await fh.close();
    }
  } catch {
    return { kind: 'missing', qcow2: false };
  }
}

/** Checks an edit of `def`; returns the field errors and, when there are none, the new definition. */
export async function checkEdit(def: VmDefinition, edit: VmEdit, ctx: EditContext): Promise<{ errors: DetailsFieldError[]; next?: VmDefinition }> {
  const errors: DetailsFieldError[] = [];
  const err = (field: string, message: string): void => void errors.push({ field, message });
  const file = async (field: string, p: string | undefined, what: string, optional = false) => {
    if (!p) return optional ? undefined : err(field, `Choose ${what}.`);
    if (!path.isAbsolute(p)) return err(field, `Give the full path of ${what} (starting with /).`);
    const pr = await probe(p);
    if (pr.kind === 'missing') return err(field, `${p} does not exist.`);
    if (pr.kind !== 'file') return err(field, `${p} is not a file.`);
    return pr;
  };

  // Overview
  const name = edit.name.trim();
  const np = nameProblem(name);
  if (np) err('name', np);
  else {
    const other = ctx.store.byName(name);
    if (other && other.uuid !== def.uuid) err('name', `A VM named '${name}' already exists.`);
  }
  if (!OS_CHOICES.some((o) => o.id === edit.os) && edit.os !== def.os) err('os', 'Choose an operating system.');

  // CPUs and memory
  if (!Number.isInteger(edit.cpus) || edit.cpus < 1 || edit.cpus > ctx.host.cpus) err('cpus', `CPUs must be a whole number between 1 and ${ctx.host.cpus}.`);
  if (!Number.isInteger(edit.memoryMiB) || edit.memoryMiB < 16 || edit.memoryMiB > ctx.host.memoryMiB) {
    err('memory', `Memory must be a whole number of MiB between 16 and ${ctx.host.memoryMiB}.`);
  }

  // Disks
  const disks: Disk[] = [];
  let ide = 0;
  let virtio = 0;
  const seen = new Set<string>();
  for (const [i, d] of edit.disks.entries()) {
    const f = `disks.${i}`;
    const p = d.path.trim();
    if (d.bus === 'ide') ide++;
    else virtio++;
    if (d.media === 'cdrom' && d.bus !== 'ide') err(`${f}.bus`, 'CD-ROM drives are IDE only (the engine has no virtio CD-ROM).');
    if (d.media === 'cdrom' && p === '') {
      disks.push({ path: '', format: 'raw', media: 'cdrom', bus: 'ide', readOnly: true });
      continue; // an empty drive
    }
    const pr = await file(`${f}.path`, p, d.media === 'cdrom' ? 'an ISO image' : 'a disk image');
    // A disk this VM already has keeps its stated format: its contents are the
    // guest's, and a qcow2 header a guest wrote into its raw disk must never be
    // followed (it could name any host file as its backing file). So no format is
    // suggested from the contents, and changing it is refused.
    const had = def.disks.find((x) => x.path && path.resolve(x.path) === path.resolve(p));
    if (pr && had && had.format !== d.format) {
      err(`${f}.format`, `${p} stays ${had.format}: the format of an attached disk is not changed (its contents are written by the guest). To use the file as ${d.format}, remove the disk, save, and attach it again.`);
    } else if (pr && !had && d.format === 'qcow2') {
      if (!pr.qcow2) err(`${f}.format`, `${p} is not a qcow2 image: choose raw.`);
      else if (ctx.chainProblem) {
        const problem = await ctx.chainProblem(p, 'qcow2');
        if (problem) err(`${f}.path`, problem);
      }
    }
    if (p && seen.has(path.resolve(p))) err(`${f}.path`, `${p} is attached twice.`);
    if (p) seen.add(path.resolve(p));
    const readOnly = d.media === 'cdrom' ? true : !!d.readOnly;
    disks.push({ path: p, format: d.format, media: d.media, bus: d.bus, ...(readOnly ? { readOnly: true } : {}) });
  }
  if (ide > MAX_IDE) err('disks', `At most ${MAX_IDE} IDE drives (two channels, two devices each).`);
  if (virtio > MAX_VIRTIO) err('disks', `At most ${MAX_VIRTIO} virtio disks.`);

  // Boot options
  let boot: VmDefinition['boot'];
  if (edit.boot.kind === 'firmware') {
    const order = edit.boot.order;
    if (!/^[cdn]{1,3}$/.test(order) || new Set(order).size !== order.length) err('boot.order', 'Choose at least one boot device, each once.');
    else if (![...order].some((c) => (c === 'c' ? disks.some((d) => d.media === 'disk') : c === 'd' ? disks.some((d) => d.media === 'cdrom') : false))) {
      err('boot.order', 'None of the chosen boot devices is attached: add a disk or a CD-ROM, or choose another device.');
    }
    boot = {
      kind: 'firmware',
      order,
      ...(edit.boot.menu ? { menu: true } : {}),
      ...(edit.boot.menu && edit.boot.menuTimeoutMs !== undefined ? { menuTimeoutMs: edit.boot.menuTimeoutMs } : {}),
    };
  } else {
    const b = edit.boot;
    await file('boot.kernel', b.kernel.trim(), 'a kernel');
    await file('boot.initrd', b.initrd?.trim(), 'an initrd', true);
    boot = {
      kind: 'kernel',
      kernel: b.kernel.trim(),
      ...(b.initrd?.trim() ? { initrd: b.initrd.trim() } : {}),
      ...(b.append ? { append: b.append } : {}),
      ...(b.flatAddress !== undefined ? { flatAddress: b.flatAddress } : {}),
    };
  }

  // NICs: QEMU's 52:54:00 range, unique among all VMs and within this one
  const macs = new Set<string>();
  for (const [i, n] of edit.nics.entries()) {
    const mac = n.mac.trim().toLowerCase();
    if (!MAC_PATTERN.test(mac)) err(`nics.${i}.mac`, 'Use a MAC in the 52:54:00:xx:xx:xx range.');
    else if (macs.has(mac)) err(`nics.${i}.mac`, `${mac} is used twice in this VM.`);
    else {
      const other = ctx.store.list().find((o) => o.uuid !== def.uuid && o.nics.some((x) => x.mac === mac));
      if (other) err(`nics.${i}.mac`, `${mac} is used by ${other.name}.`);
    }
    macs.add(mac);
    const net = n.network === 'user' ? 'default' : n.network.trim();
    if (!net) err(`nics.${i}.network`, 'Choose a network.');
    else if (ctx.networkExists && !ctx.networkExists(net)) err(`nics.${i}.network`, `No network named '${net}'.`);
  }
  if (edit.nics.length > 8) err('nics', 'At most 8 network interfaces.');

  // Serial
  let logFile = edit.serial.logFile?.trim();
  if (logFile) {
    const r = await serialLogPath(logFile, ctx.logsDir);
    if ('error' in r) err('serial.logFile', r.error);
    else logFile = r.path;
  }

  // Display
  let display = def.display;
  if (edit.display) {
    const { width, height } = edit.display;
    if (width === undefined && height === undefined) display = undefined;
    else if (width === undefined || height === undefined) err('display', 'Give both the width and the height.');
    else {
      const why = displayProblem(width, height);
      if (why) err('display', why);
      else display = isDefaultDisplay({ width, height }) ? undefined : { width, height };
    }
  }

  if (errors.length) return { errors };
  const next: VmDefinition = {
    ...def,
    name,
    os: edit.os,
    memoryMiB: edit.memoryMiB,
    cpus: edit.cpus,
    boot,
    disks,
    nics: edit.nics.map((n) => ({ ...n, mac: n.mac.trim().toLowerCase(), network: n.network === 'user' ? 'default' : n.network.trim() })),
  };
  if (logFile) next.serial = { logFile };
  else delete next.serial;
  if (display) next.display = display;
  else delete next.display;
  const autostart = edit.autostart ?? !!def.autostart;
  if (autostart) next.autostart = true;
  else delete next.autostart;
  return { errors, next };
}
