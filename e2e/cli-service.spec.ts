// The `vireo` verbs against a real per-user service and the real engine, no app open:
// list --all, start, console (driven through piped stdin), destroy, undefine
// --remove-all-storage; a `vireo serve` started afterwards shows the VM the CLI started
// as Running in the browser, and the VM keeps running when that serve goes away.
// The guest is the lead's echo guest (native/guests/echo.asm), as serial.spec.ts uses.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { chromium } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { RpcClient } from '../electron/services/rpc-socket';
import { CHROMIUM, CHROMIUM_ARGS, ROOT, buildGuest, distReady, engineCapability, servicePid, startServe, stopServiceAndWait, waitVmState, isolatedEnv, runVireo } from './harness';

const why = distReady() ?? engineCapability();
if (why) console.log(`SKIP vireo CLI + service e2e: ${why}`);

const { dir, env } = isolatedEnv('vireo-cli-');

const vireo = (args: string[], timeoutMs = 30000) => runVireo(env, args, timeoutMs);

afterAll(async () => {
  await stopServiceAndWait(env);
  fs.rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!!why)('vireo verbs on the per-user service', () => {
  it('list, start, serve shows it running, it outlives serve, console, destroy, undefine --remove-all-storage', async (ctx) => {
    const echo = buildGuest('echo', dir);
    if (!echo) return ctx.skip('nasm is not installed: cannot build the echo guest');

    // No service yet: the first verb starts one.
    expect(servicePid(env)).toBeNull();
    let r = await vireo(['list', '--all']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^ Id\s+Name\s+State\n-+\n\n$/);
    const pid = servicePid(env);
    expect(pid).toBeGreaterThan(0);
    expect(fs.statSync(path.join(dir, 'run', 'vireo', 'service.sock')).mode & 0o777).toBe(0o600);

    // A VM with a small disk, defined over the socket the way a script would (the contract's vm.create).
    const c = await RpcClient.connect(path.join(dir, 'run', 'vireo', 'service.sock'));
    const created = await c.request('vm.create', {
      media: { kind: 'kernel', kernel: echo },
      os: 'generic',
      memoryMiB: 32,
      cpus: 1,
      storage: { kind: 'create', sizeGiB: 0.01, format: 'raw' },
      name: 'echo',
      network: 'none',
    });
    c.close();
    expect(created.errors).toEqual([]);
    const disk = created.vm!.disks.find((d) => d.media === 'disk')!.path;
    expect(fs.existsSync(disk)).toBe(true);

    r = await vireo(['list', '--all']);
    expect(r.out).toMatch(/^ -\s+echo\s+shut off$/m);
    r = await vireo(['list']);
    expect(r.out).not.toMatch(/echo/);

    r = await vireo(['start', 'echo']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe("Domain 'echo' started\n\n");
    r = await vireo(['start', 'echo']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/Failed to start domain 'echo': echo is already running/);
    r = await vireo(['list']);
    expect(r.out).toMatch(/^ 1\s+echo\s+running$/m);
    r = await vireo(['domstate', created.vm!.uuid]);
    expect(r.out).toBe('running\n\n');
    r = await vireo(['list', '--all', '--output', 'json']);
    expect(JSON.parse(r.out)).toEqual([{ id: 1, name: 'echo', uuid: created.vm!.uuid, state: 'running' }]);

    // `vireo serve` started now shows the VM the CLI started, running.
    const srv = await startServe({ XDG_RUNTIME_DIR: path.join(dir, 'run') }, dir);
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    try {
      const page = await browser.newPage();
      await page.goto(srv.url);
      await page.waitForFunction(() => document.documentElement.dataset.vireoReady === 'manager');
      expect(await waitVmState(page, 'echo', ['running'], 20000)).toBe('running');
    } finally {
      await browser.close();
    }
    // serve goes away (not its stop(): that ends the service too); the VM runs on.
    const gone = new Promise((res) => srv.server.once('exit', res));
    srv.server.kill('SIGTERM');
    await gone;
    expect(servicePid(env)).toBe(pid);
    r = await vireo(['domstate', 'echo']);
    expect(r.out).toBe('running\n\n');

    // The serial console through piped stdin: the guest's banner arrives, typed bytes come back, Ctrl-] leaves.
    const con = spawn(process.execPath, [path.join(ROOT, 'bin', 'vireo.js'), 'console', 'echo'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    con.stdout.on('data', (d) => (out += d));
    con.stderr.on('data', (d) => (err += d));
    const conExit = new Promise<number | null>((res) => con.on('exit', res));
    await expect.poll(() => out, { timeout: 20000 }).toContain('echo ready');
    expect(err).toContain("Connected to domain 'echo'");
    con.stdin.write('vireo');
    await expect.poll(() => out, { timeout: 15000 }).toMatch(/echo ready[\s\S]*vireo/);
    con.stdin.write('\x1d');
    expect(await conExit).toBe(0);

    // On kvm_pvm the echo guest may crash after echoing (see serial.spec.ts); destroy needs it running.
    r = await vireo(['domstate', '--reason', 'echo']);
    if (r.out.startsWith('running')) {
      r = await vireo(['destroy', 'echo']);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toBe("Domain 'echo' destroyed\n\n");
      await expect.poll(async () => (await vireo(['domstate', 'echo'])).out, { timeout: 10000 }).toBe('shut off\n\n');
    } else console.log(`NOTE echo guest is ${r.out.trim()} after the console (engine on kvm_pvm): destroy not exercised`);
    r = await vireo(['destroy', 'echo']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/Failed to destroy domain 'echo': echo is not running/);

    r = await vireo(['undefine', '--remove-all-storage', 'echo']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe(`Domain 'echo' has been undefined\nVolume '${disk}' removed.\n\n`);
    expect(fs.existsSync(disk)).toBe(false);
    expect(fs.existsSync(echo)).toBe(true); // the kernel is not storage of the VM
    r = await vireo(['list', '--all', '--name']);
    expect(r.out).toBe('');
    r = await vireo(['dominfo', 'echo']);
    expect(r.code).toBe(1);
    expect(r.err).toBe("error: failed to get domain 'echo': no VM with this name or UUID\n");
  });

  it('dumpxml writes XML libvirt\'s schema accepts; define reads it back as a new VM with the same hardware', async (ctx) => {
    const echo = buildGuest('echo', dir);
    if (!echo) return ctx.skip('nasm is not installed: cannot build the echo guest');
    const c = await RpcClient.connect(path.join(dir, 'run', 'vireo', 'service.sock')).catch(async () => {
      await vireo(['list']); // starts the service
      return RpcClient.connect(path.join(dir, 'run', 'vireo', 'service.sock'));
    });
    const created = await c.request('vm.create', {
      media: { kind: 'kernel', kernel: echo },
      os: 'generic',
      memoryMiB: 48,
      cpus: 2,
      storage: { kind: 'create', sizeGiB: 0.01, format: 'qcow2' },
      name: 'xmlvm',
      network: 'user',
    });
    c.close();
    expect(created.errors).toEqual([]);

    let r = await vireo(['dumpxml', 'xmlvm']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/<domain type=["']kvm["']/);
    expect(r.out).toContain('<name>xmlvm</name>');
    expect(r.out).toContain(`<uuid>${created.vm!.uuid}</uuid>`);
    const f = path.join(dir, 'xmlvm.xml');
    fs.writeFileSync(f, r.out);
    const v = spawnSync('virt-xml-validate', [f, 'domain'], { encoding: 'utf8' });
    if (v.error) console.log('NOTE virt-xml-validate is not installed (Debian libvirt-clients): schema check skipped');
    else expect(v.status, v.stdout + v.stderr).toBe(0);

    // Defined again under another name: the UUID and the MAC clash with xmlvm's, so both are replaced and said so.
    const f2 = path.join(dir, 'xmlcopy.xml');
    fs.writeFileSync(f2, r.out.replace('<name>xmlvm</name>', '<name>xmlcopy</name>'));
    r = await vireo(['define', f2]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe(`Domain 'xmlcopy' defined from ${f2}\n\n`);
    expect(r.err).toMatch(/^warning: \/domain\/uuid/m);
    r = await vireo(['list', '--all', '--name']);
    expect(r.out.split('\n').filter(Boolean).sort()).toEqual(['xmlcopy', 'xmlvm']);
    // Same hardware: the copy's XML is the original's but for name, UUID and MAC.
    const norm = (x: string) =>
      x.replace(/<name>[^<]*<\/name>/, '').replace(/<uuid>[^<]*<\/uuid>/, '').replace(/address=["'][0-9a-f:]{17}["']/g, '').replace(/<vireo:created>[^<]*</, '<');
    const copy = await vireo(['dumpxml', 'xmlcopy']);
    expect(norm(copy.out)).toBe(norm(fs.readFileSync(f, 'utf8')));

    // A name clash and a file that is not there: exit 1 with virsh-like messages; nothing defined.
    r = await vireo(['define', f2]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/Failed to define domain from .*xmlcopy\.xml\nname: /);
    r = await vireo(['define', path.join(dir, 'nope.xml')]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/Failed to open file '.*nope\.xml': No such file or directory/);
    r = await vireo(['define', f, '--output', 'json']);
    expect(r.code).toBe(1);
    r = await vireo(['list', '--all', '--name']);
    expect(r.out.split('\n').filter(Boolean)).toHaveLength(2);
  });
});
