import { errors } from '../errors/app-error.ts';

// Query and path parameter checks shared by the routes: a bad value is a 400 `invalid_query` naming it.

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function stringParam(raw: unknown, name: string): string | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > 100) throw errors.badRequest('invalid_query', `${name} must be a single non-empty value`);
  return raw;
}

export function numberParam(raw: unknown, name: string, range: { min: number; max: number }): number | undefined {
  const text = stringParam(raw, name);
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^-?\d+(\.\d+)?$/.test(text) || value < range.min || value > range.max) {
    throw errors.badRequest('invalid_query', `${name} must be a number in [${range.min}, ${range.max}]`);
  }
  return value;
}

export function integerParam(raw: unknown, name: string, range: { min: number; max: number }): number | undefined {
  const value = numberParam(raw, name, range);
  if (value !== undefined && !Number.isInteger(value)) throw errors.badRequest('invalid_query', `${name} must be a whole number`);
  return value;
}

export function oneOfParam<T extends string>(raw: unknown, name: string, allowed: readonly T[]): T | undefined {
  const text = stringParam(raw, name);
  if (text === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(text)) throw errors.badRequest('invalid_query', `${name} must be one of ${allowed.join(', ')}`);
  return text as T;
}

/** An ISO 8601 date-time with a zone (Z or ±hh:mm), e.g. 2024-03-31T00:00:00+01:00. */
export function timeParam(raw: unknown, name: string): Date | undefined {
  const text = stringParam(raw, name);
  if (text === undefined) return undefined;
  const time = Date.parse(text);
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})$/.test(text) || Number.isNaN(time)) {
    throw errors.badRequest('invalid_query', `${name} must be an ISO 8601 time with a zone, e.g. 2024-03-31T00:00:00Z`);
  }
  return new Date(time);
}
