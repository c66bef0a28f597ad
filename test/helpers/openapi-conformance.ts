import assert from 'node:assert/strict';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { openApiDocument } from '../../src/api/openapi.ts';

// ajv-formats is CommonJS: under NodeNext its default import is module.exports, whose `default` is the plugin.
const addFormats = addFormatsModule.default;

interface DocumentedOperation {
  operationId: string;
  responses: Record<string, { content?: Record<string, { schema?: unknown }> }>;
}

const SCHEMAS_ID = 'https://vidsense.invalid/schemas';

/**
 * Checks real responses against /openapi.json's document: the status is one the operation lists, the
 * media type one it lists for that status, and a JSON body validates against its schema (ajv, JSON
 * Schema 2020-12 as OpenAPI 3.1 uses it). Remembers which operations it has seen.
 */
export class OpenApiConformance {
  readonly exercised = new Set<string>();
  private readonly ajv = new Ajv2020({ strict: true, allErrors: true });
  private readonly compiled = new Map<string, ValidateFunction>();
  private readonly routes: Array<{ method: string; pattern: RegExp; operation: DocumentedOperation }> = [];

  constructor() {
    addFormats(this.ajv);
    this.ajv.addSchema({ $id: SCHEMAS_ID, $defs: JSON.parse(JSON.stringify(openApiDocument.components.schemas).replaceAll('#/components/schemas/', '#/$defs/')) });
    for (const [path, item] of Object.entries(openApiDocument.paths)) {
      const pattern = new RegExp(`^${path.replace(/\{\w+\}/g, '[^/]+')}$`);
      for (const [method, operation] of Object.entries(item)) this.routes.push({ method: method.toUpperCase(), pattern, operation: operation as unknown as DocumentedOperation });
    }
  }

  get operationIds(): string[] {
    return this.routes.map((route) => route.operation.operationId).sort();
  }

  /** Validates a parsed value against a named component schema (e.g. an event's data). */
  validateSchema(name: string, value: unknown): void {
    this.assertValid(`${SCHEMAS_ID}#/$defs/${name}`, { $ref: `${SCHEMAS_ID}#/$defs/${name}` }, value, name);
  }

  /**
   * Checks one response. `body` is the parsed JSON (or text) the caller read; pass undefined for
   * responses without a body (204) or whose body is a stream the caller checks itself.
   */
  check(method: string, url: string, res: Response, body?: unknown): void {
    const { pathname } = new URL(url);
    const route = this.routes.find((r) => r.method === method && r.pattern.test(pathname));
    assert.ok(route, `${method} ${pathname} is not in the OpenAPI document`);
    const { operation } = route;
    const label = `${operation.operationId} ${res.status}`;
    const documented = operation.responses[String(res.status)];
    assert.ok(documented, `${label}: status not documented (documented: ${Object.keys(operation.responses).join(', ')})`);
    this.exercised.add(operation.operationId);
    const mediaType = (res.headers.get('content-type') ?? '').split(';')[0]!.trim();
    if (!documented.content) {
      assert.equal(body, undefined, `${label}: a body where none is documented`);
      return;
    }
    const content = documented.content[mediaType];
    assert.ok(content, `${label}: media type ${mediaType || '(none)'} not documented (documented: ${Object.keys(documented.content).join(', ')})`);
    if (body === undefined || mediaType !== 'application/json' || !content.schema) return;
    const schemaJson = JSON.stringify(content.schema).replaceAll('#/components/schemas/', `${SCHEMAS_ID}#/$defs/`);
    this.assertValid(`${operation.operationId}:${res.status}:${mediaType}`, JSON.parse(schemaJson), body, label);
  }

  private assertValid(cacheKey: string, schema: object, value: unknown, label: string): void {
    let validate = this.compiled.get(cacheKey);
    if (!validate) {
      validate = this.ajv.compile(schema);
      this.compiled.set(cacheKey, validate);
    }
    assert.ok(validate(value), `${label}: body does not match the document: ${this.ajv.errorsText(validate.errors)}\n${JSON.stringify(value).slice(0, 2000)}`);
  }
}
