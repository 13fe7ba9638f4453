// OS detection from install media: ISOs built here with xorriso, carrying the labels
// real media have (taken from osinfo-db's own <media> rules), against the host's
// osinfo-db (Debian osinfo-db); the GRUB rescue CD is unknown.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OSINFO_DIR, OsInfoDb } from './db';
import { detectOs } from './detect';
import { readIsoInfo } from './iso';

const noXorriso = spawnSync('sh', ['-c', 'command -v xorriso']).status === 0 ? null : 'xorriso missing (Debian xorriso)';
const noDb = fs.existsSync(path.join(OSINFO_DIR, 'os')) ? null : 'osinfo-db missing (Debian osinfo-db)';
const GRUB = '/usr/lib/grub-rescue/grub-rescue-cdrom.iso';
const noGrub = fs.existsSync(GRUB) ? null : `${GRUB} missing (Debian grub-rescue-pc)`;
for (const why of [noXorriso, noDb, noGrub]) if (why) console.log(`skipping some OS detection tests: ${why}`);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-osinfo-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** An ISO 9660 image with these identifiers (and an El Torito boot image when `boot`). */
function makeIso(file: string, ids: { V: string; publisher?: string; A?: string; sysid?: string }, boot = false): string {
  const root = path.join(tmp, `root-${path.basename(file)}`);
  fs.mkdirSync(root, { recursive: true });
  fs.writeFileSync(path.join(root, 'README.TXT'), 'vireo test medium\n');
  if (boot) fs.writeFileSync(path.join(root, 'boot.img'), Buffer.alloc(2048));
  const args = ['-as', 'mkisofs', '-quiet', '-o', path.join(tmp, file), '-V', ids.V];
  if (ids.publisher) args.push('-publisher', ids.publisher);
  if (ids.A) args.push('-A', ids.A);
  if (ids.sysid) args.push('-sysid', ids.sysid);
  if (boot) args.push('-b', 'boot.img', '-no-emul-boot');
  args.push(root);
  const r = spawnSync('xorriso', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`xorriso failed: ${r.stderr}`);
  return path.join(tmp, file);
}

describe.skipIf(!!noXorriso)('readIsoInfo', () => {
  it('reads the primary volume descriptor and El Torito', async () => {
    const f = makeIso('ids.iso', { V: 'Fedora-S-dvd-x86_64-37', publisher: 'Fedora Project', A: 'GENISOIMAGE ISO 9660', sysid: 'LINUX' }, true);
    const info = await readIsoInfo(f);
    expect(info).toMatchObject({ volumeId: 'Fedora-S-dvd-x86_64-37', publisherId: 'FEDORA PROJECT', applicationId: 'GENISOIMAGE ISO 9660', systemId: 'LINUX', elTorito: true });
    expect(info!.volumeBytes).toBe(fs.statSync(f).size);
    const plain = await readIsoInfo(makeIso('plain.iso', { V: 'PLAIN' }));
    expect(plain!.elTorito).toBe(false);
    const notIso = path.join(tmp, 'disk.img');
    fs.writeFileSync(notIso, Buffer.alloc(64 * 1024));
    expect(await readIsoInfo(notIso)).toBeNull();
  });
});

describe.skipIf(!!noXorriso || !!noDb)('detectOs with osinfo-db', () => {
  const db = new OsInfoDb();
  beforeAll(() => expect(db.load()).not.toBeNull());

  it.each([
    ['debian.iso', { V: 'Debian 11.5.0 amd64 n' }, /^Debian 11\b/, 'volume label'],
    ['ubuntu.iso', { V: 'Ubuntu 22.04.1 LTS amd64' }, /^Ubuntu 22\.04\b/, 'volume label'],
    ['fedora.iso', { V: 'Fedora-S-dvd-x86_64-37', sysid: 'LINUX' }, /^Fedora( Linux| Server)? 37\b/, 'volume label and system id'],
    ['win.iso', { V: 'CCCOMA_X64FRE_EN-US_DV9', publisher: 'MICROSOFT CORPORATION' }, /^Microsoft Windows (10|11)\b/, 'volume label and publisher'],
  ])('%s (%j) → %s', async (file, ids, name, how) => {
    const d = await detectOs(db, makeIso(file, ids, true));
    expect(d.source).toBe('medium');
    expect(d.os!.name).toMatch(name);
    expect(d.message).toContain(`Detected: ${d.os!.name} (from the medium's ${how})`);
    expect(d.iso!.volumeId).toBe(ids.V);
    expect(d.db).toBe(db.version);
  });

  it('takes the OS\'s resources and virtio support for the wizard\'s defaults', async () => {
    const deb = (await detectOs(db, makeIso('deb2.iso', { V: 'Debian 11.5.0 amd64 n' }))).os!;
    // osinfo-db: Debian 11 recommends 1 GiB RAM and 20 GiB storage, and has virtio drivers.
    expect(deb).toMatchObject({ id: 'debian11', memoryMiB: 1024, diskGiB: 20, virtioDisk: true, virtioNet: true, family: 'linux' });
    const win = (await detectOs(db, makeIso('win2.iso', { V: 'CCCOMA_X64FRE_EN-US_DV9', publisher: 'MICROSOFT CORPORATION' }))).os!;
    console.log(`Windows label → ${win.name} (${win.id})`);
    expect(win.family).toBe('winnt');
    expect(win.virtioDisk).toBe(false); // Windows has no virtio-blk driver in the box
    expect(win.memoryMiB).toBeGreaterThanOrEqual(2048);
    expect(win.diskGiB).toBeGreaterThanOrEqual(32);
  });

  it.skipIf(!!noGrub)('the GRUB rescue CD is unknown', async () => {
    const d = await detectOs(db, GRUB);
    expect(d.iso).not.toBeNull();
    expect(d.iso!.elTorito).toBe(true);
    expect(d.source).toBe('none');
    expect(d.os).toBeNull();
    expect(d.message).toMatch(/^Unknown medium: no osinfo-db entry matches its volume label/);
  });

  it('a label nothing matches falls back to the file name, and says so', async () => {
    const d = await detectOs(db, makeIso('my-ubuntu-copy.iso', { V: 'MY_BACKUP' }));
    expect(d.source).toBe('filename');
    expect(d.os!.id).toBe('ubuntu24.04');
    expect(d.message).toContain("Guessed from the file name: Ubuntu 24.04 (no osinfo-db entry matches its volume label 'MY_BACKUP')");
  });

  it('search: words in name or id, built-ins first', () => {
    const r = db.search('debian 11');
    expect(r[0].id).toBe('debian11');
    expect(db.search('')[0].id).toBe('generic');
    expect(db.search('windows 11').some((e) => e.id === 'win11')).toBe(true);
    expect(db.knows('win11')).toBe(true);
    expect(db.knows('nosuchos')).toBe(false);
    expect(db.byUrl('http://debian.org/debian/11')!.id).toBe('debian11');
  });
});

describe('without osinfo-db', () => {
  it('falls back to the name-based guess and says osinfo-db is missing', async () => {
    const db = new OsInfoDb(path.join(tmp, 'no-such-db'));
    const d = await detectOs(db, '/srv/iso/debian-12.7.0-amd64-netinst.iso');
    expect(d.db).toBeNull();
    expect(d.source).toBe('filename');
    expect(d.os!.id).toBe('debian12');
    expect(d.message).toContain('osinfo-db is not installed');
    const u = await detectOs(db, '/srv/iso/whatever.iso');
    expect(u.source).toBe('none');
    expect(u.message).toMatch(/^Unknown medium: osinfo-db is not installed/);
  });
});
