// The display's preferred size (issue 14, "display size follows the window"): the VM's
// setting goes to the engine at start; a console's "Resize guest with window" sends its
// area over the stream and the engine host offers it, fitted to what the display can
// show; 0 x 0 goes back to the VM's setting. Fake engine here; the real one in
// native/tests/kvm_kboot_test.cc (a guest that reads the EDID) and e2e/display-size.spec.ts.
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { encodeUiToHost } from '../../common/contracts/stream';
import { editOf, fitDisplaySize } from '../../common/contracts/vm';
import type { VireoService } from '../app';
import { FakeMachine, newVmRequest, testService } from './fake-engine';

let tmp: string;
let svc: VireoService;

beforeEach(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'vireo-display-'));
  svc = await testService(tmp);
});
afterEach(async () => {
  svc.shutdown();
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe('fitDisplaySize', () => {
  it('keeps a size the display can offer, clamps small and huge ones, shrinks to video memory keeping the aspect', () => {
    expect(fitDisplaySize(1533, 901)).toEqual({ width: 1532, height: 901 });
    expect(fitDisplaySize(100, 50)).toEqual({ width: 640, height: 480 });
    expect(fitDisplaySize(2560, 1600)).toEqual({ width: 2560, height: 1600 }); // 16,384,000 bytes: fits 16 MiB
    const big = fitDisplaySize(3840, 2160); // a 4K window on a HiDPI screen
    expect(big.width * big.height * 4).toBeLessThanOrEqual(16 * 1024 * 1024);
    expect(Math.abs(big.width / big.height - 16 / 9)).toBeLessThan(0.01);
    expect(fitDisplaySize(8000, 8000).width).toBeLessThanOrEqual(4095);
  });
});

describe('the console offers its size to the engine', () => {
  it('the VM setting at start, the window while resizing, the setting again when turned off', async () => {
    const iso = path.join(tmp, 'x.iso');
    await fsp.writeFile(iso, Buffer.alloc(4096, 1));
    const { vm } = await svc['vm.create'](newVmRequest(iso, { network: 'none' }));
    const uuid = vm!.uuid;
    const edit = editOf(await svc['vm.get']({ uuid }));
    expect((await svc['vm.update']({ uuid, edit: { ...edit, display: { width: 1280, height: 800 } } })).errors).toEqual([]);
    await svc['vm.action']({ uuid, action: 'start' });
    const m = FakeMachine.last!;
    expect(m.config.display).toEqual({ width: 1280, height: 800 });
    const st = svc.openStream(uuid);
    st.send(encodeUiToHost({ op: 'subscribe', frames: false, serial: false }));
    st.send(encodeUiToHost({ op: 'displaySize', width: 1533, height: 901 }));
    await vi.waitFor(() => expect(m.displaySize).toEqual({ width: 1532, height: 901 }));
    st.send(encodeUiToHost({ op: 'displaySize', width: 7680, height: 4320 }));
    await vi.waitFor(() => expect(m.displaySize).toEqual(fitDisplaySize(7680, 4320)));
    st.send(encodeUiToHost({ op: 'displaySize', width: 0, height: 0 }));
    await vi.waitFor(() => expect(m.displaySize).toEqual({ width: 1280, height: 800 }));
    st.close();
  });
});
