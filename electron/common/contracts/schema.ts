// A small runtime schema library: every message crossing a process or network
// boundary is parsed with one of these, and its TypeScript type is inferred from
// the same declaration (declared once, checked everywhere). Pure TS: runs in the
// renderer, the preload, the main process and the engine host.

export class ValidationError extends Error {
  constructor(
    readonly path: string,
    readonly problem: string,
  ) {
    super(`${path || 'value'}: ${problem}`);
    this.name = 'ValidationError';
  }
}

export interface Schema<T> {
  readonly kind: string;
  readonly optional?: boolean;
  parse(value: unknown, path?: string): T;
}

export type Infer<S> = S extends Schema<infer T> ? T : never;

function fail(path: string, problem: string): never {
  throw new ValidationError(path, problem);
}

const typeName = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

export interface StringOpts {
  min?: number;
  max?: number;
  pattern?: RegExp;
}

export function string(opts: StringOpts = {}): Schema<string> {
  return {
    kind: 'string',
    parse(v, path = '') {
      if (typeof v !== 'string') fail(path, `expected a string, got ${typeName(v)}`);
      if (opts.min !== undefined && v.length < opts.min) fail(path, `shorter than ${opts.min}`);
      if (opts.max !== undefined && v.length > opts.max) fail(path, `longer than ${opts.max}`);
      if (opts.pattern && !opts.pattern.test(v)) fail(path, `does not match ${opts.pattern}`);
      return v;
    },
  };
}

export interface NumberOpts {
  int?: boolean;
  min?: number;
  max?: number;
}

export function number(opts: NumberOpts = {}): Schema<number> {
  return {
    kind: 'number',
    parse(v, path = '') {
      if (typeof v !== 'number' || !Number.isFinite(v)) fail(path, `expected a finite number, got ${typeName(v)}`);
      if (opts.int && !Number.isInteger(v)) fail(path, 'expected an integer');
      if (opts.min !== undefined && v < opts.min) fail(path, `less than ${opts.min}`);
      if (opts.max !== undefined && v > opts.max) fail(path, `greater than ${opts.max}`);
      return v;
    },
  };
}

export function boolean(): Schema<boolean> {
  return {
    kind: 'boolean',
    parse(v, path = '') {
      if (typeof v !== 'boolean') fail(path, `expected a boolean, got ${typeName(v)}`);
      return v;
    },
  };
}

export function literal<const T extends string | number | boolean>(value: T): Schema<T> {
  return {
    kind: 'literal',
    parse(v, path = '') {
      if (v !== value) fail(path, `expected ${JSON.stringify(value)}`);
      return value;
    },
  };
}

export function enums<const T extends readonly string[]>(values: T): Schema<T[number]> {
  const set = new Set<string>(values);
  return {
    kind: 'enum',
    parse(v, path = '') {
      if (typeof v !== 'string' || !set.has(v)) fail(path, `expected one of ${values.join(', ')}`);
      return v as T[number];
    },
  };
}

export function unknown(): Schema<unknown> {
  return { kind: 'unknown', parse: (v) => v };
}

/** Bytes: a Uint8Array (structured clone, Buffer) — never a JSON array of numbers. */
export function bytes(max = 64 * 1024 * 1024): Schema<Uint8Array> {
  return {
    kind: 'bytes',
    parse(v, path = '') {
      if (!(v instanceof Uint8Array)) fail(path, `expected bytes, got ${typeName(v)}`);
      if (v.byteLength > max) fail(path, `more than ${max} bytes`);
      return v;
    },
  };
}

export interface OptionalSchema<T> extends Schema<T | undefined> {
  readonly optional: true;
}

export function optional<T>(inner: Schema<T>): OptionalSchema<T> {
  return {
    kind: 'optional',
    optional: true as const,
    parse(v, path = '') {
      return v === undefined ? undefined : inner.parse(v, path);
    },
  };
}

export function nullable<T>(inner: Schema<T>): Schema<T | null> {
  return {
    kind: 'nullable',
    parse(v, path = '') {
      return v === null ? null : inner.parse(v, path);
    },
  };
}

export function array<T>(inner: Schema<T>, opts: { max?: number } = {}): Schema<T[]> {
  return {
    kind: 'array',
    parse(v, path = '') {
      if (!Array.isArray(v)) fail(path, `expected an array, got ${typeName(v)}`);
      if (opts.max !== undefined && v.length > opts.max) fail(path, `more than ${opts.max} items`);
      return v.map((item, i) => inner.parse(item, `${path}[${i}]`));
    },
  };
}

export function record<T>(inner: Schema<T>): Schema<Record<string, T>> {
  return {
    kind: 'record',
    parse(v, path = '') {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(path, `expected an object, got ${typeName(v)}`);
      const out: Record<string, T> = {};
      for (const [k, item] of Object.entries(v)) out[k] = inner.parse(item, path ? `${path}.${k}` : k);
      return out;
    },
  };
}

type Shape = Record<string, Schema<unknown>>;
type OptionalKeys<S extends Shape> = { [K in keyof S]: S[K] extends { optional: true } ? K : never }[keyof S];
type RequiredKeys<S extends Shape> = Exclude<keyof S, OptionalKeys<S>>;
type Simplify<T> = { [K in keyof T]: T[K] } & {};
export type ObjectOf<S extends Shape> = Simplify<
  { [K in RequiredKeys<S>]: Infer<S[K]> } & { [K in OptionalKeys<S>]?: Infer<S[K]> }
>;

export interface ObjectSchema<S extends Shape> extends Schema<ObjectOf<S>> {
  readonly shape: S;
}

/** A closed object: unknown keys are an error (a typo in a message is a bug, not a silent no-op). */
export function object<S extends Shape>(shape: S): ObjectSchema<S> {
  const keys = Object.keys(shape);
  return {
    kind: 'object',
    shape,
    parse(v, path = '') {
      if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) {
        fail(path, `expected an object, got ${typeName(v)}`);
      }
      const src = v as Record<string, unknown>;
      for (const k of Object.keys(src)) {
        if (!(k in shape) && src[k] !== undefined) fail(path ? `${path}.${k}` : k, 'unknown field');
      }
      const out: Record<string, unknown> = {};
      for (const k of keys) {
        const parsed = shape[k]!.parse(src[k], path ? `${path}.${k}` : k);
        if (parsed !== undefined) out[k] = parsed;
      }
      return out as ObjectOf<S>;
    },
  };
}

/** A union discriminated by a string field. */
export function variant<K extends string, const M extends Record<string, ObjectSchema<Shape>>>(
  key: K,
  members: M,
): Schema<{ [T in keyof M]: Infer<M[T]> }[keyof M]> {
  return {
    kind: 'variant',
    parse(v, path = '') {
      if (typeof v !== 'object' || v === null) fail(path, `expected an object, got ${typeName(v)}`);
      const tag = (v as Record<string, unknown>)[key];
      if (typeof tag !== 'string' || !Object.prototype.hasOwnProperty.call(members, tag)) {
        fail(path ? `${path}.${key}` : key, `expected one of ${Object.keys(members).join(', ')}`);
      }
      return members[tag]!.parse(v, path) as { [T in keyof M]: Infer<M[T]> }[keyof M];
    },
  };
}
