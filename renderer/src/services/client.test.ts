// The Electron console port as the page sees it (portStream): stream.ts bytes both
// ways, and the main process's last message, why the stream closed, reported the way
// a WebSocket's close reason is. A real MessageChannel (Node's) stands in for the page's.
import { MessageChannel } from 'node:worker_threads';
import { expect, it, vi } from 'vitest';
import { decodeUiToHost, encodeSerial } from '../../../electron/common/contracts/stream';
import { portStream } from './client';

it('a console port carries stream bytes and reports why it closed', async () => {
  const { port1, port2 } = new MessageChannel();
  const s = portStream(port1 as unknown as MessagePort);
  const got: unknown[] = [];
  const whys: string[] = [];
  s.onMessage((m) => got.push(m));
  s.onClose((why) => whys.push(why));
  const sent: unknown[] = [];
  port2.on('message', (d: Uint8Array) => sent.push(decodeUiToHost(d)));
  s.send({ op: 'subscribe', frames: false, serial: true });
  port2.postMessage(encodeSerial(0, new TextEncoder().encode('hi')));
  port2.postMessage('not bytes'); // ignored
  port2.postMessage({ t: 'closed', why: 'the VM is not running' });
  await vi.waitFor(() => expect(whys).toEqual(['the VM is not running']));
  expect(got).toEqual([{ op: 'serial', port: 0, data: new TextEncoder().encode('hi') }]);
  await vi.waitFor(() => expect(sent).toEqual([{ op: 'subscribe', frames: false, serial: true }]));
  port1.close();
});
