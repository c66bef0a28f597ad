/**
 * What a Range request header asks of an object of `size` bytes (RFC 9110 section 14):
 * - full: no Range, a unit other than bytes (which must be ignored), or several ranges (a server may
 *   answer those with the whole object; browsers ask for one range at a time);
 * - partial: one satisfiable range, clamped to the object (start and end inclusive);
 * - unsatisfiable: a malformed bytes range, or one that starts past the end (416).
 */
export type RangeRequest = { kind: 'full' } | { kind: 'partial'; start: number; end: number } | { kind: 'unsatisfiable' };

const BYTES = /^bytes=/i;
const SPEC = /^(\d*)-(\d*)$/;

export function parseRange(header: string | undefined, size: number): RangeRequest {
  if (header === undefined || header.trim() === '' || !BYTES.test(header.trim())) return { kind: 'full' };
  const specs = header.trim().replace(BYTES, '').split(',');
  if (specs.length > 1) return { kind: 'full' };
  const match = SPEC.exec(specs[0]!.trim());
  if (!match) return { kind: 'unsatisfiable' };
  const [, first = '', last = ''] = match;
  if (first === '' && last === '') return { kind: 'unsatisfiable' };
  if (first === '') {
    // A suffix: the last n bytes.
    const length = Number(last);
    if (length === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'partial', start: Math.max(0, size - length), end: size - 1 };
  }
  const start = Number(first);
  const end = last === '' ? size - 1 : Number(last);
  if (end < start || start >= size) return { kind: 'unsatisfiable' };
  return { kind: 'partial', start, end: Math.min(end, size - 1) };
}
