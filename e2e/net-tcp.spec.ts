// TCP through user-mode NAT with the real engine, at native speed (issue 11):
// `vireo boot --nic user` runs native/guests/netbench (a multiboot kernel
// whose polled virtio-net driver, DHCP and TCP client run in ring 3, so they
// run natively even on a kvm_pvm host). The guest connects to 10.0.2.2 (the
// host's loopback through slirp) on a port this test listens on; the test then
// has it answer pings, upload 16 MiB whose every byte is checked here, and
// download 16 MiB it checks itself, then close and exit through isa-debug-exit
// (status 1). The same driver feeds bench/net against QEMU.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { NETBENCH_GUEST, connectGuest, startVireo } from '../bench/net/net-bench';
import { distReady, engineCapability } from './harness';

const why = distReady() ?? engineCapability() ??
  (fs.existsSync(NETBENCH_GUEST) ? null : `${NETBENCH_GUEST} is not built (gcc, ld and nasm build it with the native tree)`);
if (why) console.log(`SKIP TCP through NAT e2e: ${why}`);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-e2e-net-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!!why)('TCP through user-mode NAT', () => {
  it('a virtio-net guest: pings, a checked upload and download, a clean close', async () => {
    const { link, engine } = await connectGuest((port) => startVireo(port, dir), 90);
    try {
      for (let i = 0; i < 100; i++) expect(await link.ping()).toBeLessThan(5);
      const n = 16 << 20;
      expect(await link.upload(n, true)).toBeGreaterThan(0);
      expect(await link.download(n, true)).toBeGreaterThan(0);
      await link.quit();
      expect(await engine.exited).toBe(1);
      const serial = fs.readFileSync(engine.serialLog, 'utf8');
      expect(serial).toMatch(/netbench: DHCP 10\.0\.2\.15 via 10\.0\.2\.2/);
      expect(serial).toMatch(/netbench: done, 100 pings, 1 uploads, 1 downloads/);
    } finally {
      if (engine.proc.exitCode === null) engine.proc.kill('SIGKILL');
    }
  }, 120000);
});
