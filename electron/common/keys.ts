// Text as keystrokes: which PC key (a DOM KeyboardEvent.code, the names the
// engine's i8042 maps to scancodes) types each printable ASCII character on a
// US layout, and with Shift or not. `vireo boot --keys-at` and the console's
// "Type clipboard" both use it: a guest without an agent gets text the only
// way a PC has, through its keyboard.

/** DOM code for a printable ASCII character (US layout), with shift. */
export function charToCode(ch: string): { code: string; shift: boolean } | null {
  if (/^[a-z]$/.test(ch)) return { code: `Key${ch.toUpperCase()}`, shift: false };
  if (/^[A-Z]$/.test(ch)) return { code: `Key${ch}`, shift: true };
  if (/^[0-9]$/.test(ch)) return { code: `Digit${ch}`, shift: false };
  const plain: Record<string, string> = {
    ' ': 'Space', '\n': 'Enter', '\r': 'Enter', '\t': 'Tab', '-': 'Minus', '=': 'Equal', '[': 'BracketLeft',
    ']': 'BracketRight', '\\': 'Backslash', ';': 'Semicolon', "'": 'Quote', '`': 'Backquote', ',': 'Comma',
    '.': 'Period', '/': 'Slash',
  };
  if (plain[ch]) return { code: plain[ch]!, shift: false };
  const shifted: Record<string, string> = {
    '!': 'Digit1', '@': 'Digit2', '#': 'Digit3', $: 'Digit4', '%': 'Digit5', '^': 'Digit6', '&': 'Digit7',
    '*': 'Digit8', '(': 'Digit9', ')': 'Digit0', _: 'Minus', '+': 'Equal', '{': 'BracketLeft', '}': 'BracketRight',
    '|': 'Backslash', ':': 'Semicolon', '"': 'Quote', '~': 'Backquote', '<': 'Comma', '>': 'Period', '?': 'Slash',
  };
  if (shifted[ch]) return { code: shifted[ch]!, shift: true };
  return null;
}

export interface KeyEvent {
  code: string;
  down: boolean;
}

/** The most characters one "Type clipboard" sends (the engine queues up to 4096 key events). */
export const MAX_TYPED_CHARS = 1000;

/**
 * Key events that type `text`: each character pressed and released, wrapped in
 * Shift where it needs it; "\r\n" is one Enter. Characters no US key types
 * (non-ASCII, control characters) are skipped and listed; text beyond `max`
 * characters is cut off and counted.
 */
export function textToKeyEvents(text: string, max = MAX_TYPED_CHARS): { events: KeyEvent[]; skipped: string[]; truncated: number } {
  const chars = Array.from(text.replace(/\r\n/g, '\n'));
  const truncated = Math.max(0, chars.length - max);
  const events: KeyEvent[] = [];
  const skipped: string[] = [];
  for (const ch of chars.slice(0, max)) {
    const k = charToCode(ch);
    if (!k) {
      skipped.push(ch);
      continue;
    }
    if (k.shift) events.push({ code: 'ShiftLeft', down: true });
    events.push({ code: k.code, down: true }, { code: k.code, down: false });
    if (k.shift) events.push({ code: 'ShiftLeft', down: false });
  }
  return { events, skipped, truncated };
}
