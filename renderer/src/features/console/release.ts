// The console's release key (issue 14, "the grab key shown and configurable"): the key
// that gives keyboard (and, without the USB tablet, mouse) back to the host. Ctrl+Alt is
// virt-manager's default; Ctrl+Alt+G leaves Ctrl+Alt to the guest (a guest shortcut that
// starts with it no longer ends the capture); Right Ctrl is VirtualBox's host key. Chosen
// in the console's toolbar, remembered per browser.
export const RELEASE_KEYS = {
  'ctrl-alt': 'Ctrl+Alt',
  'ctrl-alt-g': 'Ctrl+Alt+G',
  'right-ctrl': 'Right Ctrl',
} as const;
export type ReleaseKey = keyof typeof RELEASE_KEYS;

export const DEFAULT_RELEASE_KEY: ReleaseKey = 'ctrl-alt';

export function releaseKeyFrom(stored: string | null): ReleaseKey {
  return stored && Object.hasOwn(RELEASE_KEYS, stored) ? (stored as ReleaseKey) : DEFAULT_RELEASE_KEY;
}

interface KeyLike {
  key: string;
  code: string;
  ctrlKey: boolean;
  altKey: boolean;
  shiftKey: boolean;
  metaKey: boolean;
}

/** The modifiers a guest may hold down when the capture ends: released so none sticks. */
const MODIFIERS = ['ControlLeft', 'ControlRight', 'AltLeft', 'AltRight', 'ShiftLeft', 'ShiftRight', 'MetaLeft', 'MetaRight'];

/**
 * Whether a key press is the release key. When it is: the key codes to send the guest as
 * released (whatever it saw pressed on the way), and the press itself is not sent.
 */
export function releaseMatch(k: ReleaseKey, e: KeyLike): string[] | null {
  switch (k) {
    case 'ctrl-alt':
      return e.ctrlKey && e.altKey && (e.key === 'Control' || e.key === 'Alt') ? MODIFIERS : null;
    case 'ctrl-alt-g':
      return e.ctrlKey && e.altKey && e.code === 'KeyG' ? MODIFIERS : null;
    case 'right-ctrl':
      return e.code === 'ControlRight' && !e.altKey && !e.shiftKey && !e.metaKey ? MODIFIERS : null;
  }
}
