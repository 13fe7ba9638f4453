// The preload: tiny, sandboxed, and it validates every channel it forwards. It
// cannot import app code at run time (sandboxed preloads only get 'electron'), so
// the lists below are checked against the contract at compile time instead.
import { contextBridge, ipcRenderer } from 'electron';
import type { IPC as IpcNames, Method } from '../common/contracts/api';

const IPC = {
  call: 'vireo:call',
  event: 'vireo:event',
  openStream: 'vireo:open-stream',
  openConsoleWindow: 'vireo:open-console',
} as const satisfies typeof IpcNames;

// Exactly the contract's methods: a missing or extra name is a compile error.
const METHODS: Record<Method, true> = {
  'host.info': true,
  'vm.list': true,
  'vm.get': true,
  'vm.create': true,
  'vm.update': true,
  'vm.action': true,
  'vm.changeMedia': true,
  'vm.setAutostart': true,
  'vm.clonePlan': true,
  'vm.clone': true,
  'job.cancel': true,
  'vm.deletePlan': true,
  'vm.delete': true,
  'vm.screenshot': true,
  'vm.interfaces': true,
  'vm.setLink': true,
  'snapshot.list': true,
  'snapshot.create': true,
  'snapshot.revert': true,
  'snapshot.delete': true,
  'fs.probe': true,
  'storage.pools': true,
  'storage.poolDefine': true,
  'storage.poolUndefine': true,
  'storage.volumes': true,
  'storage.volumeCreate': true,
  'storage.volumeResize': true,
  'storage.volumeDelete': true,
  'vm.exportXml': true,
  'vm.importXml': true,
  'vm.createXml': true,
  'vm.updateXml': true,
  'os.detect': true,
  'os.list': true,
  'vm.devices': true,
  'vm.statsHistory': true,
  'network.list': true,
  'network.define': true,
  'network.edit': true,
  'network.start': true,
  'network.stop': true,
  'network.autostart': true,
  'network.leases': true,
  'network.undefine': true,
};
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
let nextId = 1;

/** The page's window, as far as the preload uses it (the root tsconfig has no DOM lib). */
interface PageWindow {
  postMessage(message: unknown, targetOrigin: string, transfer: unknown[]): void;
}

contextBridge.exposeInMainWorld('vireo', {
  async call(method: unknown, params: unknown): Promise<unknown> {
    if (typeof method !== 'string' || !Object.prototype.hasOwnProperty.call(METHODS, method)) throw new Error(`unknown method ${String(method)}`);
    if (typeof params !== 'object' || params === null) throw new Error('params must be an object');
    const reply = (await ipcRenderer.invoke(IPC.call, { t: 'call', id: nextId++, method, params })) as { t: string; value?: unknown; message?: string };
    if (reply?.t === 'result') return reply.value;
    throw new Error(reply?.message ?? 'no reply');
  },
  onEvent(cb: (name: string, payload: unknown) => void): () => void {
    if (typeof cb !== 'function') throw new Error('callback required');
    const h = (_e: unknown, m: { name?: unknown; payload?: unknown }) => {
      if (m && typeof m.name === 'string') cb(m.name, m.payload);
    };
    ipcRenderer.on(IPC.event, h);
    return () => void ipcRenderer.removeListener(IPC.event, h);
  },
  openStream(uuid: unknown): void {
    if (typeof uuid !== 'string' || !UUID.test(uuid)) throw new Error('bad VM id');
    const onPort = (e: Electron.IpcRendererEvent, m: { uuid?: unknown }) => {
      if (m?.uuid !== uuid) return;
      ipcRenderer.removeListener('vireo:stream-port', onPort);
      // MessagePorts can't cross contextBridge; post it to the page's own window.
      (globalThis as unknown as PageWindow).postMessage({ type: 'vireo-stream', uuid }, '*', e.ports);
    };
    ipcRenderer.on('vireo:stream-port', onPort);
    ipcRenderer.send(IPC.openStream, uuid);
  },
  openConsole(uuid: unknown): void {
    if (typeof uuid !== 'string' || !UUID.test(uuid)) throw new Error('bad VM id');
    ipcRenderer.send(IPC.openConsoleWindow, uuid);
  },
});
