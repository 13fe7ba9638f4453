// A small, strict XML reader and writer for libvirt's domain XML and osinfo-db files:
// elements, attributes, text, comments, CDATA, the five named entities and character
// references. No DTDs (a DOCTYPE is refused: libvirt's files never carry one), no
// external entities. Every element and attribute carries a `used` flag so a reader can
// report, by path, what it did not look at.

export class XmlSyntaxError extends Error {
  constructor(message: string, readonly line: number, readonly column: number) {
    super(`XML syntax error at line ${line}, column ${column}: ${message}`);
    this.name = 'XmlSyntaxError';
  }
}

export interface XmlElement {
  name: string;
  attrs: Map<string, { value: string; used: boolean }>;
  children: XmlElement[];
  /** The element's own text (child text nodes joined; whitespace kept). */
  text: string;
  used: boolean;
  /** XPath-like, 1-based among same-named siblings: /domain/devices/disk[2]/source. */
  path: string;
  line: number;
}

const NAME = /[A-Za-z_:][A-Za-z0-9_:.-]*/y;

function decodeEntities(s: string, at: () => [number, number]): string {
  return s.replace(/&([^;&\s]{1,10});|&/g, (m, ent: string | undefined) => {
    if (!ent) throw new XmlSyntaxError("a bare '&' (write &amp;)", ...at());
    if (ent === 'lt') return '<';
    if (ent === 'gt') return '>';
    if (ent === 'amp') return '&';
    if (ent === 'quot') return '"';
    if (ent === 'apos') return "'";
    const n = /^#x([0-9a-fA-F]+)$/.exec(ent) ?? /^#([0-9]+)$/.exec(ent);
    if (n) {
      const code = parseInt(n[1], ent[1] === 'x' ? 16 : 10);
      if (code > 0x10ffff || code === 0) throw new XmlSyntaxError(`bad character reference ${m}`, ...at());
      return String.fromCodePoint(code);
    }
    throw new XmlSyntaxError(`unknown entity ${m}`, ...at());
  });
}

/** Parses one XML document; returns its root element. */
export function parseXml(src: string): XmlElement {
  let i = 0;
  const pos = (at = i): [number, number] => {
    const before = src.slice(0, at);
    const line = before.split('\n').length;
    return [line, at - before.lastIndexOf('\n')];
  };
  const fail = (msg: string, at = i): never => {
    throw new XmlSyntaxError(msg, ...pos(at));
  };
  const skipWs = () => {
    while (i < src.length && /\s/.test(src[i])) i++;
  };
  const readName = (): string => {
    NAME.lastIndex = i;
    const m = NAME.exec(src);
    if (!m) fail('expected a name');
    i += m![0].length;
    return m![0];
  };
  /** Skips comments, processing instructions and whitespace between markup at the top level. */
  const skipMisc = () => {
    for (;;) {
      skipWs();
      if (src.startsWith('<!--', i)) {
        const e = src.indexOf('-->', i + 4);
        if (e < 0) fail('unterminated comment');
        i = e + 3;
      } else if (src.startsWith('<?', i)) {
        const e = src.indexOf('?>', i + 2);
        if (e < 0) fail('unterminated processing instruction');
        i = e + 2;
      } else if (src.startsWith('<!DOCTYPE', i)) {
        fail('a DOCTYPE is not accepted');
      } else return;
    }
  };

  if (src.charCodeAt(0) === 0xfeff) i = 1;
  skipMisc();
  if (src[i] !== '<') fail(i >= src.length ? 'the document is empty' : 'expected an element');

  const parseElement = (): XmlElement => {
    const start = i;
    i++; // '<'
    const name = readName();
    const el: XmlElement = { name, attrs: new Map(), children: [], text: '', used: false, path: '', line: pos(start)[0] };
    for (;;) {
      const hadWs = i < src.length && /\s/.test(src[i]);
      skipWs();
      if (src.startsWith('/>', i)) {
        i += 2;
        return el;
      }
      if (src[i] === '>') {
        i++;
        break;
      }
      if (i >= src.length) fail(`unterminated start tag <${name}>`, start);
      if (!hadWs) fail('expected whitespace between attributes');
      const an = readName();
      skipWs();
      if (src[i] !== '=') fail(`attribute ${an} has no value`);
      i++;
      skipWs();
      const q = src[i];
      if (q !== '"' && q !== "'") fail(`attribute ${an}'s value must be quoted`);
      const e = src.indexOf(q, i + 1);
      if (e < 0) fail(`unterminated value of attribute ${an}`);
      const raw = src.slice(i + 1, e);
      if (raw.includes('<')) fail(`'<' in the value of attribute ${an}`);
      if (el.attrs.has(an)) fail(`attribute ${an} appears twice`);
      const at = i;
      el.attrs.set(an, { value: decodeEntities(raw, () => pos(at)), used: false });
      i = e + 1;
    }
    for (;;) {
      if (i >= src.length) fail(`<${name}> is not closed`, start);
      if (src.startsWith('</', i)) {
        i += 2;
        const close = readName();
        if (close !== name) fail(`</${close}> closes <${name}> (opened at line ${el.line})`, i - close.length - 2);
        skipWs();
        if (src[i] !== '>') fail('expected >');
        i++;
        return el;
      }
      if (src.startsWith('<!--', i)) {
        const e = src.indexOf('-->', i + 4);
        if (e < 0) fail('unterminated comment');
        i = e + 3;
      } else if (src.startsWith('<![CDATA[', i)) {
        const e = src.indexOf(']]>', i + 9);
        if (e < 0) fail('unterminated CDATA section');
        el.text += src.slice(i + 9, e);
        i = e + 3;
      } else if (src.startsWith('<?', i)) {
        const e = src.indexOf('?>', i + 2);
        if (e < 0) fail('unterminated processing instruction');
        i = e + 2;
      } else if (src.startsWith('<!', i)) {
        fail('unexpected markup declaration');
      } else if (src[i] === '<') {
        el.children.push(parseElement());
      } else {
        const e = src.indexOf('<', i);
        const end = e < 0 ? src.length : e;
        const at = i;
        el.text += decodeEntities(src.slice(i, end), () => pos(at));
        i = end;
      }
    }
  };
  const root = parseElement();
  skipMisc();
  if (i < src.length) fail('content after the root element');
  // Paths: /domain/devices/disk[2]/source; the [n] only where same-named siblings exist.
  const setPaths = (el: XmlElement, p: string) => {
    el.path = p;
    const total = new Map<string, number>();
    for (const c of el.children) total.set(c.name, (total.get(c.name) ?? 0) + 1);
    const seen = new Map<string, number>();
    for (const c of el.children) {
      const n = (seen.get(c.name) ?? 0) + 1;
      seen.set(c.name, n);
      setPaths(c, `${p}/${c.name}${total.get(c.name)! > 1 ? `[${n}]` : ''}`);
    }
  };
  setPaths(root, `/${root.name}`);
  return root;
}

/** Paths of what a reader did not mark used: whole elements, or attributes of used elements. */
export function unusedPaths(root: XmlElement): string[] {
  const out: string[] = [];
  const walk = (el: XmlElement) => {
    if (!el.used) return void out.push(el.path);
    for (const [k, a] of el.attrs) if (!a.used) out.push(`${el.path}/@${k}`);
    for (const c of el.children) walk(c);
  };
  walk(root);
  return out;
}

// ---- writing ----

export function escapeXml(s: string, attr = false): string {
  const t = s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  return attr ? t.replace(/'/g, '&apos;').replace(/"/g, '&quot;') : t;
}

/** A node to write: [name, attributes, ...children], a string child is text. */
export interface XmlNode extends Array<string | Record<string, string | number | undefined> | XmlNode> {
  0: string;
  1: Record<string, string | number | undefined>;
}

/** Writes a node tree with two-space indentation, single-quoted attributes (as virsh dumpxml). */
export function writeXml(node: XmlNode, indent = ''): string {
  const [name, attrs] = node;
  const kids = node.slice(2) as Array<XmlNode | string>;
  const a = Object.entries(attrs)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => ` ${k}='${escapeXml(String(v), true)}'`)
    .join('');
  if (kids.length === 0) return `${indent}<${name}${a}/>\n`;
  if (kids.every((k) => typeof k === 'string')) return `${indent}<${name}${a}>${escapeXml(kids.join(''))}</${name}>\n`;
  return `${indent}<${name}${a}>\n${kids.map((k) => (typeof k === 'string' ? `${indent}  ${escapeXml(k)}\n` : writeXml(k, indent + '  '))).join('')}${indent}</${name}>\n`;
}
