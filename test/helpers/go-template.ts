/**
 * A small interpreter for the subset of Go's text/template and Sprig that deploy/helm/vidsense sticks to,
 * so the chart can be rendered and checked without a helm binary. It follows Go's semantics where the chart
 * depends on them and refuses what it does not implement, rather than guessing:
 *
 * Syntax: text; actions `{{ pipeline }}` with `{{-`/`-}}` trimming; comment actions (`{{/*` … closed by star-slash `}}`); `if`/`else if`/
 * `else`/`end`, `with`/`else`, `range` (lists by index, maps in sorted key order, `$k, $v :=` and `$v :=`
 * forms, `else`), `define`, `template`; variables `$x := …`, `$x = …`, `$` and `$x.field`; fields `.a.b`;
 * parenthesised pipelines; `|` pipes (the value becomes the last argument); string ("…" and `…`), number,
 * `true`, `false` and `nil` literals.
 *
 * Values: maps and lists as in JSON. Numbers from values files are Go float64 (Helm decodes YAML through
 * JSON); integer literals in templates and the results of `int`, `len`, `add`, `sub`, `mul`, `max` are Go
 * ints (GoInt here). As in Go, comparing an int with a float64 is an error, and printing a float64 uses
 * `%v` (1000000 prints as 1e+06), which is why the chart quotes numeric settings in values.yaml.
 *
 * Functions: Go's and, or (short-circuit, returning an operand), not, eq, ne, lt, le, gt, ge, len, index,
 * print, printf (%s %v %q %d %%; %d only on ints), urlquery; Helm's include, required, fail, toYaml;
 * Sprig's default, empty, quote, nindent, indent, trunc, trimSuffix, trimPrefix, replace, lower, upper,
 * contains, hasPrefix, hasKey, dict, list, join, toString, int, add, sub, mul, max, ternary, kindIs,
 * sha256sum, b64enc. Anything else is an error ("function not defined"), as it is in Go.
 *
 * test/unit/deploy/helm-chart.spec.ts compares its output for the chart with Go's own (test/helpers/helm-go)
 * where Go and Sprig are installed.
 */
import { createHash } from 'node:crypto';
import { stringify } from 'yaml';

/** A Go int (template literal or the result of an int-valued function), as opposed to a float64. */
export class GoInt {
  constructor(readonly value: number) {
    if (!Number.isInteger(value)) throw new Error(`GoInt of a non-integer ${value}`);
  }
}

export type GoValue = null | undefined | boolean | number | string | GoInt | GoValue[] | { [key: string]: GoValue };

export class TemplateError extends Error {
  constructor(message: string, readonly where?: string) {
    super(where ? `${where}: ${message}` : message);
    this.name = 'TemplateError';
  }
}

// ---------------------------------------------------------------- lexing and parsing

type Token =
  | { kind: 'field'; path: string[]; glued: boolean } // .a.b ; path [] is the dot itself; glued: right after ")"
  | { kind: 'var'; name: string; path: string[] } // $x.a ; name '' is $
  | { kind: 'ident'; name: string }
  | { kind: 'string'; value: string }
  | { kind: 'number'; value: number; int: boolean }
  | { kind: 'punct'; value: '(' | ')' | '|' | ':=' | '=' | ',' };

type Operand =
  | { kind: 'field'; path: string[] }
  | { kind: 'var'; name: string; path: string[] }
  | { kind: 'literal'; value: GoValue }
  | { kind: 'call'; name: string }
  | { kind: 'sub'; pipeline: Pipeline; path: string[] };

interface Command {
  operands: Operand[];
}

interface Pipeline {
  declare?: { names: string[]; assign: boolean };
  commands: Command[];
}

type Node =
  | { kind: 'text'; text: string }
  | { kind: 'action'; pipeline: Pipeline; where: string }
  | { kind: 'if' | 'with'; pipeline: Pipeline; then: Node[]; otherwise: Node[]; where: string }
  | { kind: 'range'; pipeline: Pipeline; body: Node[]; otherwise: Node[]; where: string }
  | { kind: 'template'; name: string; pipeline: Pipeline | undefined; where: string };

interface RawAction {
  body: string;
  where: string;
}

/** Splits a template into text and action bodies, applying `{{-` and `-}}` trimming and dropping comments. */
function scan(source: string, file: string): Array<string | RawAction> {
  const parts: Array<string | RawAction> = [];
  let pos = 0;
  let trimNext = false;
  while (pos <= source.length) {
    const open = source.indexOf('{{', pos);
    let text = open === -1 ? source.slice(pos) : source.slice(pos, open);
    if (trimNext) text = text.replace(/^\s+/, '');
    if (open === -1) {
      parts.push(text);
      break;
    }
    let start = open + 2;
    if (/^-[ \t\r\n]/.test(source.slice(start, start + 2))) {
      text = text.replace(/\s+$/, '');
      start += 1;
    }
    parts.push(text);
    const close = findClose(source, start, file);
    let end = close;
    trimNext = false;
    if (/[ \t\r\n]-$/.test(source.slice(close - 2, close))) {
      trimNext = true;
      end = close - 1;
    }
    const line = source.slice(0, open).split('\n').length;
    const body = source.slice(start, end).trim();
    if (!body.startsWith('/*')) parts.push({ body, where: `${file}:${line}` });
    else if (!body.endsWith('*/')) throw new TemplateError('unclosed comment', `${file}:${line}`);
    pos = close + 2;
  }
  return parts;
}

function findClose(source: string, from: number, file: string): number {
  let quote: string | undefined;
  for (let i = from; i < source.length; i += 1) {
    const c = source[i];
    if (quote) {
      if (c === '\\' && quote === '"') i += 1;
      else if (c === quote) quote = undefined;
    } else if (source.startsWith('/*', i)) {
      const end = source.indexOf('*/', i + 2);
      if (end === -1) break;
      i = end + 1;
    } else if (c === '"' || c === '`') quote = c;
    else if (c === '}' && source[i + 1] === '}') return i;
  }
  throw new TemplateError('unclosed action', `${file}:${source.slice(0, from).split('\n').length}`);
}

function tokenize(body: string, where: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  const pathAt = (): string[] => {
    const path: string[] = [];
    while (body[i] === '.' && /[A-Za-z_]/.test(body[i + 1] ?? '')) {
      const m = /^\.([A-Za-z_][A-Za-z0-9_]*)/.exec(body.slice(i))!;
      path.push(m[1]!);
      i += m[0].length;
    }
    return path;
  };
  while (i < body.length) {
    const c = body[i]!;
    const rest = body.slice(i);
    if (/\s/.test(c)) i += 1;
    else if (rest.startsWith(':=')) (tokens.push({ kind: 'punct', value: ':=' }), (i += 2));
    else if ('()|=,'.includes(c)) (tokens.push({ kind: 'punct', value: c as '(' }), (i += 1));
    else if (c === '"') {
      const m = /^"(?:[^"\\]|\\.)*"/.exec(rest);
      if (!m) throw new TemplateError('unterminated string', where);
      tokens.push({ kind: 'string', value: JSON.parse(m[0]) as string });
      i += m[0].length;
    } else if (c === '`') {
      const end = body.indexOf('`', i + 1);
      if (end === -1) throw new TemplateError('unterminated raw string', where);
      tokens.push({ kind: 'string', value: body.slice(i + 1, end) });
      i = end + 1;
    } else if (c === '$') {
      const m = /^\$([A-Za-z_][A-Za-z0-9_]*)?/.exec(rest)!;
      i += m[0].length;
      tokens.push({ kind: 'var', name: m[1] ?? '', path: pathAt() });
    } else if (c === '.') {
      const glued = body[i - 1] === ')';
      if (/[A-Za-z_]/.test(body[i + 1] ?? '')) tokens.push({ kind: 'field', path: pathAt(), glued });
      else (tokens.push({ kind: 'field', path: [], glued }), (i += 1));
    } else if (/[-0-9]/.test(c)) {
      const m = /^-?\d+(\.\d+)?([eE][-+]?\d+)?/.exec(rest);
      if (!m) throw new TemplateError(`unexpected "${c}"`, where);
      tokens.push({ kind: 'number', value: Number(m[0]), int: !m[1] && !m[2] });
      i += m[0].length;
    } else if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(rest)!;
      tokens.push({ kind: 'ident', name: m[0] });
      i += m[0].length;
    } else throw new TemplateError(`unexpected "${c}" in action`, where);
  }
  return tokens;
}

class PipelineParser {
  private pos = 0;
  constructor(
    private readonly tokens: Token[],
    private readonly where: string,
  ) {}

  static parse(tokens: Token[], where: string, allowDeclare: boolean): Pipeline {
    const parser = new PipelineParser(tokens, where);
    const pipeline = parser.pipeline(allowDeclare);
    if (parser.pos !== tokens.length) throw new TemplateError('unexpected tokens after the pipeline', where);
    return pipeline;
  }

  private peek(): Token | undefined {
    return this.tokens[this.pos];
  }

  private isPunct(value: string, offset = 0): boolean {
    const token = this.tokens[this.pos + offset];
    return token?.kind === 'punct' && token.value === value;
  }

  private pipeline(allowDeclare: boolean): Pipeline {
    let declare: Pipeline['declare'];
    if (allowDeclare) {
      // $x := ..., $x = ..., $k, $v := ...
      const names: string[] = [];
      let offset = 0;
      while (this.tokens[this.pos + offset]?.kind === 'var') {
        const token = this.tokens[this.pos + offset] as Extract<Token, { kind: 'var' }>;
        if (token.path.length > 0) break;
        names.push(token.name);
        if (this.isPunct(',', offset + 1)) offset += 2;
        else {
          offset += 1;
          break;
        }
      }
      if (names.length > 0 && (this.isPunct(':=', offset) || this.isPunct('=', offset))) {
        declare = { names, assign: this.isPunct('=', offset) };
        this.pos += offset + 1;
      }
    }
    const commands: Command[] = [this.command()];
    while (this.isPunct('|')) {
      this.pos += 1;
      commands.push(this.command());
    }
    return { declare, commands };
  }

  private command(): Command {
    const operands: Operand[] = [];
    for (;;) {
      const token = this.peek();
      if (!token || (token.kind === 'punct' && token.value !== '(')) break;
      operands.push(this.operand());
    }
    if (operands.length === 0) throw new TemplateError('missing value in command', this.where);
    return { operands };
  }

  private operand(): Operand {
    const token = this.tokens[this.pos++]!;
    switch (token.kind) {
      case 'field':
        return { kind: 'field', path: token.path };
      case 'var':
        return { kind: 'var', name: token.name, path: token.path };
      case 'string':
        return { kind: 'literal', value: token.value };
      case 'number':
        return { kind: 'literal', value: token.int ? new GoInt(token.value) : token.value };
      case 'ident':
        if (token.name === 'true' || token.name === 'false') return { kind: 'literal', value: token.name === 'true' };
        if (token.name === 'nil') return { kind: 'literal', value: null };
        return { kind: 'call', name: token.name };
      case 'punct': {
        if (token.value !== '(') throw new TemplateError(`unexpected "${token.value}"`, this.where);
        const pipeline = this.pipeline(false);
        if (!this.isPunct(')')) throw new TemplateError('unclosed "("', this.where);
        this.pos += 1;
        const next = this.peek();
        // (pipeline).field only when the field follows the parenthesis directly; "(x) .y" is two operands.
        const path = next?.kind === 'field' && next.glued && next.path.length > 0 ? (this.pos++, next.path) : [];
        return { kind: 'sub', pipeline, path };
      }
    }
  }
}

interface ParsedFile {
  nodes: Node[];
  defines: Map<string, Node[]>;
}

/** Parses one template file into its nodes and the `define`d templates it holds. */
export function parseTemplate(source: string, file: string): ParsedFile {
  const parts = scan(source, file);
  const defines = new Map<string, Node[]>();
  let index = 0;

  const keywordOf = (part: RawAction): string | undefined => /^(if|else|end|range|with|define|template|block)\b/.exec(part.body)?.[1];
  const pipelineOf = (body: string, where: string, allowDeclare = true) => PipelineParser.parse(tokenize(body, where), where, allowDeclare);

  const list = (terminators: string[]): { nodes: Node[]; end: RawAction | undefined } => {
    const nodes: Node[] = [];
    while (index < parts.length) {
      const part = parts[index++]!;
      if (typeof part === 'string') {
        if (part) nodes.push({ kind: 'text', text: part });
        continue;
      }
      const keyword = keywordOf(part);
      if (keyword && terminators.includes(keyword)) return { nodes, end: part };
      switch (keyword) {
        case 'if':
        case 'with':
          nodes.push(conditional(keyword, part.body.slice(keyword.length), part.where));
          break;
        case 'range': {
          const pipeline = pipelineOf(part.body.slice(5), part.where);
          const body = list(['else', 'end']);
          let otherwise: Node[] = [];
          if (body.end && keywordOf(body.end) === 'else') otherwise = expectEnd(list(['end']), part.where).nodes;
          else expectEnd(body, part.where);
          nodes.push({ kind: 'range', pipeline, body: body.nodes, otherwise, where: part.where });
          break;
        }
        case 'define': {
          const name = /^define\s+"([^"]+)"$/.exec(part.body)?.[1];
          if (!name) throw new TemplateError('define needs a quoted name', part.where);
          defines.set(name, expectEnd(list(['end']), part.where).nodes);
          break;
        }
        case 'template': {
          const m = /^template\s+"([^"]+)"\s*(.*)$/s.exec(part.body);
          if (!m) throw new TemplateError('template needs a quoted name', part.where);
          nodes.push({ kind: 'template', name: m[1]!, pipeline: m[2] ? pipelineOf(m[2], part.where, false) : undefined, where: part.where });
          break;
        }
        case 'else':
        case 'end':
          throw new TemplateError(`unexpected {{${keyword}}}`, part.where);
        case 'block':
          throw new TemplateError('block is not in the supported subset', part.where);
        default:
          nodes.push({ kind: 'action', pipeline: pipelineOf(part.body, part.where), where: part.where });
      }
    }
    if (terminators.length > 0) throw new TemplateError(`missing {{end}}`, file);
    return { nodes, end: undefined };
  };

  const expectEnd = (result: { nodes: Node[]; end: RawAction | undefined }, where: string) => {
    if (!result.end || keywordOf(result.end) !== 'end' || result.end.body !== 'end') throw new TemplateError('expected {{end}}', where);
    return result;
  };

  // if/with: the then-branch, then {{else}}, {{else if ...}} (if only) chains or {{end}}.
  const conditional = (kind: 'if' | 'with', rest: string, where: string): Node => {
    const pipeline = pipelineOf(rest, where);
    const then = list(['else', 'end']);
    let otherwise: Node[] = [];
    const end = then.end!;
    if (keywordOf(end) === 'else') {
      const elseRest = end.body.slice(4).trim();
      if (elseRest.startsWith('if ') && kind === 'if') otherwise = [conditional('if', elseRest.slice(2), end.where)];
      else if (elseRest === '') otherwise = expectEnd(list(['end']), end.where).nodes;
      else throw new TemplateError(`unsupported {{${end.body}}}`, end.where);
    } else if (end.body !== 'end') throw new TemplateError('expected {{end}}', where);
    return { kind, pipeline, then: then.nodes, otherwise, where };
  };

  const { nodes } = list([]);
  return { nodes, defines };
}

// ---------------------------------------------------------------- evaluation

export type TemplateFunction = (...args: GoValue[]) => GoValue;

class Scope {
  private readonly frames: Array<Map<string, GoValue>> = [];
  constructor(root: GoValue) {
    this.frames.push(new Map([['', root]]));
  }
  push(): void {
    this.frames.push(new Map());
  }
  pop(): void {
    this.frames.pop();
  }
  declare(name: string, value: GoValue): void {
    this.frames.at(-1)!.set(name, value);
  }
  assign(name: string, value: GoValue, where: string): void {
    for (let i = this.frames.length - 1; i >= 0; i -= 1) {
      if (this.frames[i]!.has(name)) {
        this.frames[i]!.set(name, value);
        return;
      }
    }
    throw new TemplateError(`undefined variable: $${name}`, where);
  }
  get(name: string, where: string): GoValue {
    for (let i = this.frames.length - 1; i >= 0; i -= 1) if (this.frames[i]!.has(name)) return this.frames[i]!.get(name);
    throw new TemplateError(`undefined variable: $${name}`, where);
  }
}

export function isMap(value: GoValue): value is { [key: string]: GoValue } {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof GoInt);
}

/** Go template truth: false, 0, nil, "" and empty maps and lists are false. */
export function truthy(value: GoValue): boolean {
  if (value === null || value === undefined) return false;
  if (value instanceof GoInt) return value.value !== 0;
  if (Array.isArray(value)) return value.length > 0;
  if (isMap(value)) return Object.keys(value).length > 0;
  return Boolean(value);
}

/** Go's %v of a float64: shortest representation, exponent form from 1e+06 up and below 1e-04. */
function formatFloat(value: number): string {
  if (value === 0 || !Number.isFinite(value)) return String(value);
  const [mantissa, exponentText] = value.toExponential().split('e') as [string, string];
  const exponent = Number(exponentText);
  if (exponent >= -4 && exponent < 6) return String(value);
  return `${mantissa}e${exponent < 0 ? '-' : '+'}${String(Math.abs(exponent)).padStart(2, '0')}`;
}

/** How a value prints in the output (Helm turns Go's "<no value>" for nil into ""). */
export function printValue(value: GoValue, where: string): string {
  if (value === null || value === undefined) return '';
  if (value instanceof GoInt) return String(value.value);
  if (typeof value === 'number') return formatFloat(value);
  if (typeof value === 'string') return value;
  if (typeof value === 'boolean') return String(value);
  throw new TemplateError('printing a map or list is not in the supported subset (use toYaml)', where);
}

function basicKind(value: GoValue, where: string): 'int' | 'float' | 'string' | 'bool' {
  if (value instanceof GoInt) return 'int';
  if (typeof value === 'number') return 'float';
  if (typeof value === 'string') return 'string';
  if (typeof value === 'boolean') return 'bool';
  throw new TemplateError(`invalid type for comparison: ${kindOf(value)}`, where);
}

function plain(value: GoValue): number | string | boolean {
  return value instanceof GoInt ? value.value : (value as number | string | boolean);
}

function compare(a: GoValue, b: GoValue, where: string): number {
  const kind = basicKind(a, where);
  if (kind !== basicKind(b, where)) throw new TemplateError(`incompatible types for comparison: ${kindOf(a)} and ${kindOf(b)}`, where);
  const x = plain(a);
  const y = plain(b);
  return x === y ? 0 : x < y ? -1 : 1;
}

export function kindOf(value: GoValue): string {
  if (value === null || value === undefined) return 'invalid';
  if (value instanceof GoInt) return 'int';
  if (typeof value === 'number') return 'float64';
  if (typeof value === 'string') return 'string';
  if (typeof value === 'boolean') return 'bool';
  if (Array.isArray(value)) return 'slice';
  return 'map';
}

/** Sprig's notion of empty (default, empty): nil, false, 0, "" and empty collections. */
function isEmpty(value: GoValue): boolean {
  return !truthy(value);
}

/** Sprig's strval / Go's %v for the scalars the chart passes to string functions. */
function str(value: GoValue, where: string): string {
  return printValue(value, where);
}

/** Sprig's toInt64 (via cast): floats truncate, numeric strings parse, anything else is 0. */
function toInt(value: GoValue): number {
  if (value instanceof GoInt) return value.value;
  if (typeof value === 'number') return Math.trunc(value);
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (typeof value === 'string' && /^[-+]?\d+$/.test(value.trim())) return Number.parseInt(value, 10);
  return 0;
}

/** toYaml: Helm marshals through JSON (keys sorted) and trims the final newline. */
export function toYaml(value: GoValue): string {
  const json = JSON.parse(JSON.stringify(value ?? null, (_key, v: unknown) => (v instanceof GoInt ? v.value : v))) as unknown;
  // YAML 1.1 so strings such as "on" and "yes" come out quoted, and lists not indented under their key, as Go's YAML writer does.
  return stringify(json, { version: '1.1', sortMapEntries: true, lineWidth: 0, indentSeq: false }).replace(/\n$/, '');
}

function goQuote(text: string): string {
  return JSON.stringify(text).replace(/\\u00([0-9a-f]{2})/g, '\\x$1');
}

function sprintf(format: string, args: GoValue[], where: string): string {
  let next = 0;
  return format.replace(/%([%svqd])/g, (_match, verb: string) => {
    if (verb === '%') return '%';
    if (next >= args.length) throw new TemplateError(`printf: missing operand for %${verb}`, where);
    const arg = args[next++];
    if (verb === 'd') {
      if (!(arg instanceof GoInt)) throw new TemplateError(`printf %d of a ${kindOf(arg)} (Go prints %!d(…)): convert with int first`, where);
      return String(arg.value);
    }
    return verb === 'q' ? goQuote(str(arg, where)) : str(arg, where);
  });
}

export interface Engine {
  /** Renders the named defined template with `data` as dot. */
  include(name: string, data: GoValue): string;
  /** Renders a parsed file's top-level nodes with `data` as dot. */
  render(nodes: Node[], data: GoValue): string;
}

/** An engine over the `define`d templates of every file (Helm shares them across a chart's templates). */
export function createEngine(defines: Map<string, Node[]>): Engine {
  const builtins = (where: string): Record<string, TemplateFunction> => ({
    not: (v) => !truthy(v),
    eq: (a, ...rest) => rest.some((b) => compare(a, b, where) === 0),
    ne: (a, b) => compare(a, b, where) !== 0,
    lt: (a, b) => compare(a, b, where) < 0,
    le: (a, b) => compare(a, b, where) <= 0,
    gt: (a, b) => compare(a, b, where) > 0,
    ge: (a, b) => compare(a, b, where) >= 0,
    len: (v) => {
      if (typeof v === 'string' || Array.isArray(v)) return new GoInt(v.length);
      if (isMap(v)) return new GoInt(Object.keys(v).length);
      throw new TemplateError(`len of ${kindOf(v)}`, where);
    },
    index: (collection, ...keys) => {
      let value = collection;
      for (const key of keys) {
        if (isMap(value) && typeof key === 'string') value = value[key];
        else if (Array.isArray(value) && key instanceof GoInt) {
          if (key.value < 0 || key.value >= value.length) throw new TemplateError(`index out of range: ${key.value}`, where);
          value = value[key.value];
        } else if (value === null || value === undefined) value = null;
        else throw new TemplateError(`cannot index ${kindOf(value)} with ${kindOf(key)}`, where);
      }
      return value;
    },
    print: (...args) => args.map((a, i) => (i > 0 && typeof a !== 'string' && typeof args[i - 1] !== 'string' ? ' ' : '') + str(a, where)).join(''),
    printf: (format, ...args) => sprintf(String(format), args, where),
    urlquery: (...args) =>
      encodeURIComponent(args.map((a) => str(a, where)).join('')).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`).replace(/%20/g, '+'),
    include: (name, data) => engine.include(String(name), data),
    required: (message, value) => {
      if (value === null || value === undefined || value === '') throw new TemplateError(`required: ${String(message)}`, where);
      return value;
    },
    fail: (message) => {
      throw new TemplateError(`fail: ${String(message)}`, where);
    },
    toYaml: (v) => toYaml(v),
    default: (fallback, ...given) => (given.length === 0 || isEmpty(given[0]) ? fallback : given[0]),
    empty: (v) => isEmpty(v),
    quote: (...args) => args.filter((a) => a !== null && a !== undefined).map((a) => goQuote(str(a, where))).join(' '),
    nindent: (n, s) => '\n' + indent(toInt(n), str(s, where)),
    indent: (n, s) => indent(toInt(n), str(s, where)),
    trunc: (n, s) => {
      const text = str(s, where);
      const count = toInt(n);
      return count >= 0 ? text.slice(0, count) : text.slice(Math.max(text.length + count, 0));
    },
    trimSuffix: (suffix, s) => {
      const text = str(s, where);
      const end = str(suffix, where);
      return end && text.endsWith(end) ? text.slice(0, -end.length) : text;
    },
    trimPrefix: (prefix, s) => {
      const text = str(s, where);
      const start = str(prefix, where);
      return text.startsWith(start) ? text.slice(start.length) : text;
    },
    replace: (from, to, s) => str(s, where).split(str(from, where)).join(str(to, where)),
    lower: (s) => str(s, where).toLowerCase(),
    upper: (s) => str(s, where).toUpperCase(),
    contains: (part, s) => str(s, where).includes(str(part, where)),
    hasPrefix: (prefix, s) => str(s, where).startsWith(str(prefix, where)),
    hasKey: (map, key) => isMap(map) && Object.hasOwn(map, String(key)),
    dict: (...pairs) => {
      if (pairs.length % 2 !== 0) throw new TemplateError('dict needs key-value pairs', where);
      const map: { [key: string]: GoValue } = {};
      for (let i = 0; i < pairs.length; i += 2) map[str(pairs[i]!, where)] = pairs[i + 1];
      return map;
    },
    list: (...items) => items,
    join: (separator, items) => {
      if (!Array.isArray(items)) throw new TemplateError(`join of ${kindOf(items)}`, where);
      return items.map((item) => str(item, where)).join(str(separator, where));
    },
    toString: (v: GoValue) => str(v, where),
    int: (v) => new GoInt(toInt(v)),
    add: (...values) => new GoInt(values.reduce<number>((sum, v) => sum + toInt(v), 0)),
    sub: (a, b) => new GoInt(toInt(a) - toInt(b)),
    mul: (first, ...values) => new GoInt(values.reduce<number>((product, v) => product * toInt(v), toInt(first))),
    max: (...values) => new GoInt(Math.max(...values.map(toInt))),
    ternary: (ifTrue, ifFalse, condition) => {
      // Sprig's third parameter is a Go bool: a string such as "false" is a call error, not a truthy value.
      if (typeof condition !== 'boolean') throw new TemplateError(`ternary: wrong type for value; expected bool; got ${kindOf(condition)}`, where);
      return condition ? ifTrue : ifFalse;
    },
    kindIs: (kind, v) => kindOf(v) === kind,
    sha256sum: (s) => createHash('sha256').update(str(s, where)).digest('hex'),
    b64enc: (s) => Buffer.from(str(s, where)).toString('base64'),
  });

  const field = (value: GoValue, path: string[], where: string): GoValue => {
    let current = value;
    for (const name of path) {
      if (isMap(current)) current = current[name];
      else if (current === null || current === undefined) throw new TemplateError(`nil pointer evaluating interface {}.${name}`, where);
      else throw new TemplateError(`can't evaluate field ${name} in type ${kindOf(current)}`, where);
    }
    return current;
  };

  const evalPipeline = (pipeline: Pipeline, dot: GoValue, scope: Scope, where: string): GoValue => {
    let result: GoValue;
    let piped = false;
    for (const command of pipeline.commands) {
      result = evalCommand(command, dot, scope, where, piped ? [result] : []);
      piped = true;
    }
    return result;
  };

  const evalOperand = (operand: Operand, dot: GoValue, scope: Scope, where: string): GoValue => {
    switch (operand.kind) {
      case 'field':
        return field(dot, operand.path, where);
      case 'var':
        return field(scope.get(operand.name, where), operand.path, where);
      case 'literal':
        return operand.value;
      case 'sub':
        return field(evalPipeline(operand.pipeline, dot, scope, where), operand.path, where);
      case 'call':
        return call(operand.name, [], dot, scope, where, []);
    }
  };

  const call = (name: string, args: Operand[], dot: GoValue, scope: Scope, where: string, piped: GoValue[]): GoValue => {
    const lazy = (i: number): GoValue => (i < args.length ? evalOperand(args[i]!, dot, scope, where) : piped[i - args.length]);
    const count = args.length + piped.length;
    if (name === 'and' || name === 'or') {
      if (count === 0) throw new TemplateError(`${name} needs arguments`, where);
      let value: GoValue;
      for (let i = 0; i < count; i += 1) {
        value = lazy(i);
        if (name === 'and' ? !truthy(value) : truthy(value)) return value;
      }
      return value;
    }
    const fn = builtins(where)[name];
    if (!fn) throw new TemplateError(`function "${name}" not defined (not in the supported subset)`, where);
    return fn(...Array.from({ length: count }, (_, i) => lazy(i)));
  };

  const evalCommand = (command: Command, dot: GoValue, scope: Scope, where: string, piped: GoValue[]): GoValue => {
    const [first, ...rest] = command.operands;
    if (first!.kind === 'call') return call(first!.name, rest, dot, scope, where, piped);
    if (rest.length > 0 || piped.length > 0) throw new TemplateError("can't give an argument to a non-function", where);
    return evalOperand(first!, dot, scope, where);
  };

  const declareOrRun = (pipeline: Pipeline, dot: GoValue, scope: Scope, where: string): GoValue => {
    const value = evalPipeline(pipeline, dot, scope, where);
    if (pipeline.declare) {
      if (pipeline.declare.names.length !== 1) throw new TemplateError('too many declarations', where);
      const name = pipeline.declare.names[0]!;
      if (pipeline.declare.assign) scope.assign(name, value, where);
      else scope.declare(name, value);
    }
    return value;
  };

  const run = (nodes: Node[], dot: GoValue, scope: Scope): string => {
    let out = '';
    for (const node of nodes) {
      switch (node.kind) {
        case 'text':
          out += node.text;
          break;
        case 'action': {
          const value = declareOrRun(node.pipeline, dot, scope, node.where);
          if (!node.pipeline.declare) out += printValue(value, node.where);
          break;
        }
        case 'if':
        case 'with': {
          scope.push();
          const value = declareOrRun(node.pipeline, dot, scope, node.where);
          if (truthy(value)) out += run(node.then, node.kind === 'with' ? value : dot, scope);
          else out += run(node.otherwise, dot, scope);
          scope.pop();
          break;
        }
        case 'range': {
          scope.push();
          const names = node.pipeline.declare?.names ?? [];
          if (names.length > 2 || node.pipeline.declare?.assign) throw new TemplateError('range takes $v := or $k, $v :=', node.where);
          const value = evalPipeline(node.pipeline, dot, scope, node.where);
          const entries: Array<[GoValue, GoValue]> = Array.isArray(value)
            ? value.map((item, i) => [new GoInt(i), item])
            : isMap(value)
              ? Object.keys(value)
                  .sort()
                  .map((key) => [key, value[key]])
              : value === null || value === undefined
                ? []
                : (() => {
                    throw new TemplateError(`range can't iterate over ${kindOf(value)}`, node.where);
                  })();
          for (const [key, item] of entries) {
            if (names.length === 1) scope.declare(names[0]!, item);
            if (names.length === 2) (scope.declare(names[0]!, key), scope.declare(names[1]!, item));
            out += run(node.body, item, scope);
          }
          if (entries.length === 0) out += run(node.otherwise, dot, scope);
          scope.pop();
          break;
        }
        case 'template': {
          const data = node.pipeline ? evalPipeline(node.pipeline, dot, scope, node.where) : null;
          out += engine.include(node.name, data);
          break;
        }
      }
    }
    return out;
  };

  const engine: Engine = {
    include(name, data) {
      const nodes = defines.get(name);
      if (!nodes) throw new TemplateError(`no template "${name}" defined`);
      return run(nodes, data, new Scope(data));
    },
    render(nodes, data) {
      return run(nodes, data, new Scope(data));
    },
  };
  return engine;
}

function indent(n: number, text: string): string {
  const pad = ' '.repeat(n);
  return pad + text.replaceAll('\n', `\n${pad}`);
}
