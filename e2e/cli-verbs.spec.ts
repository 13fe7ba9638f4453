// More `vireo` verbs against a real per-user service and the real engine: install from
// the GRUB rescue ISO (defines and starts a VM), --print-xml checked by libvirt's schema,
// clone --auto-clone, the net-* round trip, vol-create-as then vol-list, vol-resize, domblklist.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT, distReady, engineCapability, stopServiceAndWait, isolatedEnv, runVireo } from './harness';

const ISO = '/usr/lib/grub-rescue/grub-rescue-cdrom.iso';
const why = distReady() ?? engineCapability() ?? (fs.existsSync(ISO) ? null : `${ISO} is missing (apt-get install grub-rescue-pc)`);
if (why) console.log(`SKIP vireo install/clone/net/vol verbs e2e: ${why}`);

const { dir, env } = isolatedEnv('vireo-verbs-');
const pool = path.join(dir, 'data', 'vireo', 'images');

const vireo = (args: string[], timeoutMs = 60000) => runVireo(env, args, timeoutMs);

function validate(xml: string, kind: 'domain' | 'network'): void {
  const f = path.join(dir, `check-${kind}.xml`);
  fs.writeFileSync(f, xml);
  const v = spawnSync('virt-xml-validate', [f, kind], { encoding: 'utf8' });
  if (v.error) console.log('NOTE virt-xml-validate is not installed (Debian libvirt-clients): schema check skipped');
  else expect(v.status, v.stdout + v.stderr).toBe(0);
}

afterAll(async () => {
  await stopServiceAndWait(env);
  fs.rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!!why)('vireo install, clone, net-*, vol-create-as on the per-user service', () => {
  it('install --print-xml passes the schema and defines nothing; install --cdrom --disk size=1 defines and starts the VM', async () => {
    let r = await vireo(['install', '--name', 'grub', '--cdrom', ISO, '--disk', 'size=1', '--print-xml']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('<name>grub</name>');
    expect(r.out).toContain(`<source file='${ISO}'/>`);
    expect(r.out).toContain(`<source file='${path.join(pool, 'grub.qcow2')}'/>`);
    validate(r.out, 'domain');
    expect((await vireo(['list', '--all', '--name'])).out).toBe('');
    expect(fs.existsSync(path.join(pool, 'grub.qcow2'))).toBe(false);

    // Field errors come back under the option that set them.
    r = await vireo(['install', '--name', 'grub', '--cdrom', path.join(dir, 'nope.iso'), '--memory', '8', '--disk', 'size=1', '--noautoconsole']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^error: --cdrom: .*nope\.iso does not exist\.\n--memory: Memory must be between 16/m);
    expect((await vireo(['list', '--all', '--name'])).out).toBe('');

    r = await vireo(['install', '--name', 'grub', '--cdrom', ISO, '--disk', 'size=1', '--memory', '64', '--noautoconsole']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('Starting install...');
    expect(r.out).toContain('Domain creation completed.');
    expect(r.out).toContain('vireo console grub');
    expect(fs.existsSync(path.join(pool, 'grub.qcow2'))).toBe(true);
    expect((await vireo(['domstate', 'grub'])).out).toBe('running\n\n');
    const info = await vireo(['dominfo', 'grub']);
    expect(info.out).toMatch(/^Max memory:\s+65536 KiB$/m);
    r = await vireo(['domblklist', 'grub']);
    expect(r.out).toMatch(new RegExp(`^ hda\\s+${pool}/grub\\.qcow2$`, 'm'));
    expect(r.out).toMatch(new RegExp(`^ hdb\\s+${ISO}$`, 'm'));
    r = await vireo(['domifaddr', 'grub']);
    expect(r.out).toMatch(/^ net0\s+52:54:00(:[0-9a-f]{2}){3}\s+-\s+-$/m);
    expect(r.err).toMatch(/no address known for net0: no DHCP lease seen/);

    r = await vireo(['destroy', 'grub']);
    expect(r.code, r.err).toBe(0);
    await expect.poll(async () => (await vireo(['domstate', 'grub'])).out, { timeout: 15000 }).toBe('shut off\n\n');
  });

  it('clone --auto-clone copies the disk and shares the ISO', async (ctx) => {
    if ((await vireo(['domstate', 'grub'])).code !== 0) return ctx.skip('the install test did not leave a VM');
    const r = await vireo(['clone', '--original', 'grub', '--auto-clone']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe(`Allocating '${path.join(pool, 'grub-clone.qcow2')}'\n\nClone 'grub-clone' created successfully.\n`);
    expect(fs.existsSync(path.join(pool, 'grub-clone.qcow2'))).toBe(true);
    const blk = await vireo(['domblklist', 'grub-clone']);
    expect(blk.out).toMatch(new RegExp(`^ hdb\\s+${ISO}$`, 'm'));
    const macs = await Promise.all(['grub', 'grub-clone'].map(async (n) => (await vireo(['domiflist', n])).out.match(/52:54:00(:[0-9a-f]{2}){3}/)![0]));
    expect(macs[0]).not.toBe(macs[1]);
    const again = await vireo(['clone', '--original', 'grub', '--name', 'grub-clone']);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/--name: A VM named 'grub-clone' already exists/);
  });

  it('net-define, net-start, net-list, net-dumpxml, net-destroy, net-undefine', async () => {
    const f = path.join(dir, 'lab.xml');
    fs.writeFileSync(f, "<network>\n  <name>lab</name>\n  <forward mode='nat'/>\n  <ip address='192.168.77.1' netmask='255.255.255.0'>\n    <dhcp>\n      <range start='192.168.77.100' end='192.168.77.115'/>\n    </dhcp>\n  </ip>\n</network>\n");
    let r = await vireo(['net-define', f]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe(`Network lab defined from ${f}\n\n`);
    r = await vireo(['net-list', '--all']);
    expect(r.out).toMatch(/^ lab\s+inactive\s+no\s+yes$/m);
    expect((await vireo(['net-list'])).out).not.toMatch(/lab/);
    expect((await vireo(['net-start', 'lab'])).out).toBe('Network lab started\n\n');
    expect((await vireo(['net-list'])).out).toMatch(/^ lab\s+active\s+no\s+yes$/m);
    r = await vireo(['net-dumpxml', 'lab']);
    expect(r.out).toContain("<ip address='192.168.77.1' netmask='255.255.255.0'>");
    expect(r.out).toContain("<range start='192.168.77.100' end='192.168.77.115'/>");
    validate(r.out, 'network');
    expect((await vireo(['net-autostart', 'lab'])).out).toBe('Network lab marked as autostarted\n\n');
    expect((await vireo(['net-list'])).out).toMatch(/^ lab\s+active\s+yes\s+yes$/m);
    r = await vireo(['net-dhcp-leases', 'lab']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/leases of network lab are not known/);
    expect((await vireo(['net-destroy', 'lab'])).out).toBe('Network lab destroyed\n\n');
    expect((await vireo(['net-undefine', 'lab'])).out).toBe('Network lab has been undefined\n\n');
    expect((await vireo(['net-list', '--all', '--name'])).out).toBe('default\n');
    r = await vireo(['net-undefine', 'default']);
    expect(r.code).toBe(1);
  });

  it('vol-create-as then vol-list, vol-delete', async () => {
    let r = await vireo(['vol-create-as', 'default', 'data', '10M', '--format', 'qcow2']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe('Vol data.qcow2 created\n\n');
    r = await vireo(['vol-list', '--details', 'default']);
    expect(r.out).toMatch(new RegExp(`^ data\\.qcow2\\s+${pool}/data\\.qcow2\\s+file\\s+10\\.00 MiB`, 'm'));
    // vol-resize: grow, a smaller size refused without --shrink, then shrunk by a delta
    expect((await vireo(['vol-resize', 'data.qcow2', '24M'])).out).toBe("Size of volume 'data.qcow2' successfully changed to 24M\n\n");
    r = await vireo(['vol-resize', 'data.qcow2', '1M']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/a smaller size needs --shrink/);
    r = await vireo(['vol-resize', `${pool}/data.qcow2`, '-8M', '--delta', '--shrink']);
    expect(r.code, r.err).toBe(0);
    r = await vireo(['vol-list', '--details', 'default']);
    expect(r.out).toMatch(new RegExp(`^ data\\.qcow2\\s+${pool}/data\\.qcow2\\s+file\\s+16\\.00 MiB`, 'm'));
    expect((await vireo(['vol-delete', 'data.qcow2', '--pool', 'default'])).out).toBe('Vol data.qcow2 deleted\n\n');
    expect(fs.existsSync(path.join(pool, 'data.qcow2'))).toBe(false);
  });
});
