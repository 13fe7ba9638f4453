// The Electron shell: a thin client of the per-user Vireo service (service-host.ts),
// like `vireo serve`. It connects to the service (starting it detached when none
// runs: this binary again, with --vireo-service, runs it headless), and
// service-bridge.ts forwards the windows' validated IPC to it, its events to the
// windows and console streams to MessagePorts. The VMs belong to the service:
// quitting the app asks what to do with the ones that run (quit-plan.ts: keep them
// running there, save, shut down, force off, or cancel).
import { BrowserWindow, Menu, MessageChannelMain, type MessagePortMain, app, dialog, ipcMain } from 'electron';
import { IPC } from '../common/contracts/api';
import { isCommand, main as cliMain } from '../cli/main';
import { setCliRuntime } from '../cli/runtime';
import { runService } from '../cli/service';
import { appRoot } from '../engine-host/addon';
import { DEFAULT_IDLE_S, ensureService } from '../services/service-host';
import { utilityLauncher } from './launcher-utility';
import { launchMode, needsAppReady } from './launch-mode';
import { buildMenu } from './menu';
import { electronQuitUi } from './quit-dialogs';
import { describeOutcome, quitFlow } from './quit-plan';
import { type LocalPort, type ServiceBridge, serviceCommand, startServiceBridge } from './service-bridge';
import { createWindow, hardenSession, isAppUrl } from './windows';

let manager: BrowserWindow | undefined;
const consoles = new Map<string, BrowserWindow>();

function showManager(): BrowserWindow {
  if (manager && !manager.isDestroyed()) {
    if (manager.isMinimized()) manager.restore();
    manager.show();
    manager.focus();
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

function localPort(p: MessagePortMain): LocalPort {
  return {
    postMessage: (d) => p.postMessage(d),
    onMessage: (cb) => p.on('message', (e) => cb(e.data)),
    onClose: (cb) => p.on('close', cb),
    start: () => p.start(),
    close: () => p.close(),
  };
}

/**
 * The app's binary started with --vireo-service (by a client's ensureService): the
 * per-user service, headless, engine hosts as utility processes. It never takes the
 * single-instance lock (the app's windows keep theirs) and exits when the service does.
 */
async function serviceMain(): Promise<void> {
  await app.whenReady();
  app.on('window-all-closed', () => undefined); // it has none; idle exit ends it
  const code = await runService({ idleS: Number(process.env.VIREO_SERVICE_IDLE_S ?? DEFAULT_IDLE_S), launcher: utilityLauncher() });
  app.exit(code);
}

/**
 * The app's binary started as a `vireo` command (`vireo list`, `vireo start web`,
 * `vireo serve`, …; launch-mode.ts decides): the command runs here, headless, as
 * bin/vireo.js runs it under Node, with its stdout, stderr and exit code, and no
 * window and no single-instance lock. A service it has to start is this binary
 * with --vireo-service; engine hosts it starts itself are utility processes.
 */
async function commandMain(args: string[]): Promise<void> {
  setCliRuntime({
    serviceCommand: serviceCommand(process.execPath, appRoot(), { electron: true, packaged: app.isPackaged }),
    launcher: () => utilityLauncher(),
  });
  app.disableHardwareAcceleration(); // no window: no GPU process work
  app.on('window-all-closed', () => undefined); // it has none; the command's end ends it
  let code: number;
  try {
    if (needsAppReady(args)) await app.whenReady(); // utility processes need it
    code = await cliMain(args);
  } catch (e) {
    console.error(`vireo: ${(e as Error).message ?? String(e)}`);
    code = 1;
  }
  app.exit(code ?? 0);
}

async function main(): Promise<void> {
  // A second instance focuses the first (second-instance below) instead of starting anything.
  if (!app.requestSingleInstanceLock()) return app.quit();
  await app.whenReady();
  hardenSession();

  let bridge: ServiceBridge;
  try {
    bridge = await startServiceBridge({
      // Packaged, there is no `node`: the service is this binary again, with --vireo-service.
      connect: () =>
        ensureService({
          command: serviceCommand(process.execPath, appRoot(), { electron: true, packaged: app.isPackaged }),
          onStarted: (log) => console.error(`vireo: started the Vireo service (its log: ${log})`),
        }),
      ipc: ipcMain,
      newChannel: () => {
        const { port1, port2 } = new MessageChannelMain();
        return { local: localPort(port1), remote: port2 };
      },
      windows: () =>
        BrowserWindow.getAllWindows()
          .filter((w) => !w.isDestroyed())
          .map((w) => w.webContents),
      trusted: (e) => !!e.senderFrame && isAppUrl(e.senderFrame.url),
      openConsole,
    });
  } catch (e) {
    dialog.showErrorBox('Vireo could not reach its service', (e as Error).message);
    return app.quit();
  }

  Menu.setApplicationMenu(
    buildMenu({
      newVm: () => showManager().webContents.send(IPC.event, { name: 'ui.newVm', payload: {} }),
      showManager,
    }),
  );
  showManager();
  app.on('second-instance', () => showManager());
  app.on('window-all-closed', () => app.quit());
  // Quit (menu, Ctrl+Q, the last window closing): when VMs run, ask what happens to them
  // and carry it out through the service first; Cancel (or staying after a failure)
  // calls the quit off. Then quitting only disconnects: kept VMs run on in the service.
  let quit: 'ask' | 'asking' | 'go' = 'ask';
  app.on('before-quit', (e) => {
    if (quit === 'go') return;
    e.preventDefault();
    if (quit === 'asking') return; // the question is up already
    quit = 'asking';
    const parent = () => (manager && !manager.isDestroyed() ? manager : BrowserWindow.getFocusedWindow() ?? undefined);
    quitFlow(bridge.client(), electronQuitUi(parent), { log: (l) => console.error(l) })
      .then((r) => {
        for (const o of r.outcomes) console.error(`vireo: quitting: ${describeOutcome(o)}`);
        if (!r.quit) {
          quit = 'ask';
          if (!BrowserWindow.getAllWindows().length) showManager(); // the last window had closed: Vireo stays, so does a window
          return;
        }
        quit = 'go';
        app.quit();
      })
      .catch((err: Error) => {
        quit = 'ask';
        dialog.showErrorBox('Vireo could not quit cleanly', `${err.message}\n\nNothing more was done to the VMs; Vireo stays open.`);
        if (!BrowserWindow.getAllWindows().length) showManager();
      });
  });
  app.on('will-quit', () => bridge.close());
}

const launch = launchMode(process.argv, { defaultApp: !!process.defaultApp, isCommand });
if (launch.kind === 'service') void serviceMain();
else if (launch.kind === 'cli') void commandMain(launch.args);
else void main();
