import { describe, expect, it } from 'vitest';
import { charToCode, textToKeyEvents } from './keys';

describe('text as keystrokes (US layout)', () => {
  it('maps letters, digits and shifted symbols to PC keys', () => {
    expect(charToCode('a')).toEqual({ code: 'KeyA', shift: false });
    expect(charToCode('Q')).toEqual({ code: 'KeyQ', shift: true });
    expect(charToCode('7')).toEqual({ code: 'Digit7', shift: false });
    expect(charToCode('&')).toEqual({ code: 'Digit7', shift: true });
    expect(charToCode('|')).toEqual({ code: 'Backslash', shift: true });
    expect(charToCode('é')).toBeNull();
  });

  it('types a line with shifted symbols: Shift wraps exactly the characters that need it', () => {
    const { events, skipped, truncated } = textToKeyEvents('a!B\r\n');
    expect(skipped).toEqual([]);
    expect(truncated).toBe(0);
    expect(events.map((e) => `${e.down ? '+' : '-'}${e.code}`)).toEqual([
      '+KeyA', '-KeyA',
      '+ShiftLeft', '+Digit1', '-Digit1', '-ShiftLeft',
      '+ShiftLeft', '+KeyB', '-KeyB', '-ShiftLeft',
      '+Enter', '-Enter', // CRLF is one Enter
    ]);
  });

  it('skips characters no key types and cuts long text, saying how much', () => {
    const r = textToKeyEvents('x€y\u0007', 10);
    expect(r.skipped).toEqual(['€', '\u0007']);
    expect(r.events).toHaveLength(4);
    const long = textToKeyEvents('z'.repeat(25), 10);
    expect(long.truncated).toBe(15);
    expect(long.events).toHaveLength(20);
  });
});
