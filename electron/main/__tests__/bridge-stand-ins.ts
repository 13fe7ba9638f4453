// Stand-ins for what Electron gives the service bridge (no Electron binary can run
// here): ipcMain as far as the bridge uses it, a window's IPC event, and a console
// channel made of Node's own MessageChannel (structured clone, like MessageChannelMain).
// Used by service-bridge.test.ts and e2e/app-bridge.spec.ts.
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import type { BridgeIpcEvent, LocalPort } from '../service-bridge';

/** ipcMain as far as the bridge uses it; invoke/send play a window's side. */
export function fakeIpc() {
  const handlers = new Map<string, (e: BridgeIpcEvent, a: unknown) => unknown>();
  const listeners = new Map<string, Set<(e: BridgeIpcEvent, a: unknown) => void>>();
  return {
    handle: (ch: string, fn: (e: BridgeIpcEvent, a: unknown) => unknown) => void handlers.set(ch, fn),
    removeHandler: (ch: string) => void handlers.delete(ch),
    on: (ch: string, fn: (e: BridgeIpcEvent, a: unknown) => void) => void (listeners.get(ch) ?? listeners.set(ch, new Set()).get(ch)!).add(fn),
    removeListener: (ch: string, fn: (e: BridgeIpcEvent, a: unknown) => void) => void listeners.get(ch)?.delete(fn),
    invoke: async (ch: string, e: BridgeIpcEvent, a: unknown) => {
      const h = handlers.get(ch);
      if (!h) throw new Error(`no handler for ${ch}`);
      return h(e, a);
    },
    send: (ch: string, e: BridgeIpcEvent, a: unknown) => {
      for (const l of listeners.get(ch) ?? []) l(e, a);
    },
    handlers,
    listeners,
  };
}

/** A window's IPC event: its frame's URL, and the ports main posts back to it. */
export function windowEvent(url: string) {
  const posted: Array<{ channel: string; message: unknown; port: MessagePort | undefined }> = [];
  const e: BridgeIpcEvent = {
    senderFrame: { url },
    sender: { postMessage: (channel, message, transfer) => void posted.push({ channel, message, port: (transfer as unknown as MessagePort[] | undefined)?.[0] }) },
  };
  return { e, posted };
}

/** A console channel: our end adapted to LocalPort, the window's end a real MessagePort. */
export function nodeChannel(): { local: LocalPort; remote: MessagePort } {
  const { port1, port2 } = new MessageChannel();
  return {
    local: { postMessage: (d) => port1.postMessage(d), onMessage: (cb) => port1.on('message', cb), onClose: (cb) => port1.on('close', cb), start: () => port1.start(), close: () => port1.close() },
    remote: port2,
  };
}
