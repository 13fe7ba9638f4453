// Windows: contextIsolation, sandbox, no nodeIntegration, a strict CSP, no
// navigation away from the app, no window.open (console windows come from main).
import * as path from 'node:path';
import { BrowserWindow, session, shell } from 'electron';
import { csp } from '../services/ws-bridge';

export const RENDERER_INDEX = path.join(__dirname, '..', '..', 'renderer', 'index.html');
const PRELOAD = path.join(__dirname, '..', 'preload', 'preload.js');

/** True when a frame shows our own renderer (IPC from anything else is refused). */
export function isAppUrl(url: string): boolean {
  try {
    const u = new URL(url);
    return u.protocol === 'file:' && path.normalize(decodeURIComponent(u.pathname)) === path.normalize(RENDERER_INDEX);
  } catch {
    return false;
  }
}

/** The only permissions a Vireo window gets: copying text, full screen and the console's pointer lock. */
export const ALLOWED_PERMISSIONS: ReadonlySet<string> = new Set(['clipboard-sanitized-write', 'fullscreen', 'pointerLock']);

export function hardenSession(): void {
  const s = session.defaultSession;
  // Requests (a prompt would be shown) and checks (asked silently) get the same answer.
  s.setPermissionRequestHandler((wc, permission, cb) => cb(ALLOWED_PERMISSIONS.has(permission) && isAppUrl(wc.getURL())));
  s.setPermissionCheckHandler((_wc, permission, origin) => ALLOWED_PERMISSIONS.has(permission) && origin === 'file://');
  s.setDevicePermissionHandler(() => false);
  const policy = csp([]);
  s.webRequest.onHeadersReceived((details, cb) => {
    cb({ responseHeaders: { ...details.responseHeaders, 'Content-Security-Policy': [policy] } });
  });
}

export function createWindow(opts: { hash?: string; width: number; height: number; title: string }): BrowserWindow {
  const win = new BrowserWindow({
    width: opts.width,
    height: opts.height,
    title: opts.title,
    show: false,
    webPreferences: {
      preload: PRELOAD,
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      webSecurity: true,
      spellcheck: false,
    },
  });
  win.webContents.setWindowOpenHandler(({ url }) => {
    if (/^https:\/\//.test(url)) void shell.openExternal(url);
    return { action: 'deny' };
  });
  win.webContents.on('will-navigate', (e, url) => {
    if (!isAppUrl(url)) e.preventDefault();
  });
  // A redirect is a navigation the page did not ask for in will-navigate's terms.
  win.webContents.on('will-redirect', (e, url) => {
    if (!isAppUrl(url)) e.preventDefault();
  });
  win.webContents.on('will-attach-webview', (e) => e.preventDefault());
  win.once('ready-to-show', () => win.show());
  void win.loadFile(RENDERER_INDEX, opts.hash ? { hash: opts.hash } : {});
  return win;
}
