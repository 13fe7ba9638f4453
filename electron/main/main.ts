// The Electron shell: thin on purpose. The app services (electron/services) do the
// work; this file wires them to windows over validated IPC, starts engine hosts as
// utility processes, and hands each console window a MessagePort to its engine host.
import { BrowserWindow, Menu, MessageChannelMain, app, ipcMain } from 'electron';
import { IPC } from '../common/contracts/api';
import { UUID_PATTERN } from '../common/contracts/vm';
import { engineProblem } from '../cli/serve';
import { VireoService } from '../services/app';
import { dispatch } from '../services/dispatch';
import { utilityLauncher } from './launcher-utility';
import { buildMenu } from './menu';
import { createWindow, hardenSession, isAppUrl } from './windows';

let manager: BrowserWindow | undefined;
const consoles = new Map<string, BrowserWindow>();

function showManager(): BrowserWindow {
  if (manager && !manager.isDestroyed()) {
    manager.show();
    return manager;
  }
  manager = createWindow({ width: 1100, height: 720, title: 'Vireo' });
  manager.on('closed', () => (manager = undefined));
  return manager;
}

function openConsole(uuid: string, name: string): void {
  const open = consoles.get(uuid);
  if (open && !open.isDestroyed()) return void open.focus();
  const win = createWindow({ width: 1040, height: 820, title: `${name} — Vireo`, hash: `/console/${uuid}` });
  consoles.set(uuid, win);
  win.on('closed', () => consoles.delete(uuid));
}

async function main(): Promise<void> {
  if (!app.requestSingleInstanceLock()) return app.quit();
  await app.whenReady();
  hardenSession();
  const service = await new VireoService({ launcher: utilityLauncher(), engineProblem, version: app.getVersion() }).init();

  const trusted = (e: Electron.IpcMainEvent | Electron.IpcMainInvokeEvent) => !!e.senderFrame && isAppUrl(e.senderFrame.url);

  ipcMain.handle(IPC.call, async (e, envelope: unknown) => {
    if (!trusted(e)) return { t: 'error', id: -1, message: 'refused: not a Vireo window', code: 'forbidden' };
    return dispatch(service, envelope);
  });
  // VMs marked "Start when the Vireo service starts" (virsh autostart).
  void service.autostart().then((rs) => {
    for (const r of rs) console.error(`vireo: autostart ${r.name}: ${r.error ?? 'started'}`);
  });
  service.onEvent((name, payload) => {
    for (const w of BrowserWindow.getAllWindows()) if (!w.isDestroyed()) w.webContents.send(IPC.event, { name, payload });
  });
  ipcMain.on(IPC.openStream, (e, uuid: unknown) => {
    if (!trusted(e) || typeof uuid !== 'string' || !UUID_PATTERN.test(uuid)) return;
    const { port1, port2 } = new MessageChannelMain();
    try {
      if (!service.supervisor.attachPort(uuid, port1)) throw new Error('no port support');
      e.sender.postMessage('vireo:stream-port', { uuid }, [port2]);
    } catch {
      port1.close();
      port2.close();
    }
  });
  ipcMain.on(IPC.openConsoleWindow, (e, uuid: unknown) => {
    if (!trusted(e) || typeof uuid !== 'string' || !UUID_PATTERN.test(uuid)) return;
    const vm = service.store.get(uuid);
    if (vm) openConsole(uuid, vm.name);
  });

  Menu.setApplicationMenu(
    buildMenu({
      newVm: () => showManager().webContents.send(IPC.event, { name: 'ui.newVm', payload: {} }),
      showManager,
    }),
  );
  showManager();
  app.on('second-instance', () => showManager());
  app.on('window-all-closed', () => app.quit());
  // Quit waits for running VMs to stop gracefully (engines flush and close their disks).
  let vmsStopped = false;
  app.on('before-quit', (e) => {
    if (vmsStopped) return;
    e.preventDefault();
    void service.shutdown().finally(() => {
      vmsStopped = true;
      app.quit();
    });
  });
}

void main();
