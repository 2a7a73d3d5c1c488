/**
 * LND's published REST description (Swagger 2.0, `../shared/reference/lnd/*.swagger.json`:
 * lightning, router, invoices), and a strict checker of requests and responses against it.
 *
 * Strict means: a path LND does not have, a query parameter it does not declare, or a
 * body/response field that its definition does not list is a violation, as are values
 * of the wrong JSON shape for the REST gateway (64-bit integers as strings of digits,
 * bytes as base64, enums by name). The LND stand-in runs every request it receives and
 * every response it sends through here, so the client under test can only lean on what
 * LND documents.
 */
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export type SwaggerSchema = {
  $ref?: string;
  type?: string;
  format?: string;
  enum?: string[];
  properties?: Record<string, SwaggerSchema>;
  additionalProperties?: SwaggerSchema | boolean;
  items?: SwaggerSchema;
  title?: string;
  description?: string;
};

export interface SwaggerParameter {
  name: string;
  in: 'path' | 'query' | 'body' | 'header';
  required?: boolean;
  type?: string;
  format?: string;
  enum?: string[];
  items?: SwaggerSchema;
  schema?: SwaggerSchema;
}

export interface SwaggerOperation {
  operationId: string;
  parameters?: SwaggerParameter[];
  responses: Record<string, { description?: string; schema?: SwaggerSchema }>;
}

export interface SwaggerDocument {
  file: string;
  paths: Record<string, Record<string, SwaggerOperation>>;
  definitions: Record<string, SwaggerSchema>;
  [key: string]: unknown;
}

export interface MatchedOperation {
  document: SwaggerDocument;
  template: string;
  method: string;
  operation: SwaggerOperation;
  pathParams: Record<string, string>;
  /** Streamed (server-side streaming) responses: one JSON value per line. */
  streamed: boolean;
}

export interface LndSwagger {
  documents: SwaggerDocument[];
  findOperation(method: string, pathname: string): MatchedOperation | null;
  /** A definition by name, and the document it belongs to (for its $refs). */
  definition(name: string): { document: SwaggerDocument; schema: SwaggerSchema };
  /** Violations of one request; empty when LND describes every part of it. */
  checkRequest(method: string, url: URL, body: unknown): string[];
  /** Violations of a response body (non-streamed), or of one line of a streamed one. */
  checkResponse(match: MatchedOperation, status: number, body: unknown): string[];
}

const FILES = ['lightning.swagger.json', 'router.swagger.json', 'invoices.swagger.json'];

/** `../shared/reference/lnd` beside the repository, or SLUICE_LND_SWAGGER_DIR. */
export function lndSwaggerDir(): string {
  const fromEnv = process.env['SLUICE_LND_SWAGGER_DIR'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  const here = path.dirname(fileURLToPath(import.meta.url));
  return path.resolve(here, '../../../../../shared/reference/lnd');
}

let cached: LndSwagger | null = null;

export function loadLndSwagger(dir = lndSwaggerDir()): LndSwagger {
  if (cached !== null && dir === lndSwaggerDir()) return cached;
  const documents = FILES.map((file) => {
    const full = path.join(dir, file);
    if (!existsSync(full)) throw new Error(`LND's REST description is missing: ${full} (set SLUICE_LND_SWAGGER_DIR)`);
    const parsed = JSON.parse(readFileSync(full, 'utf8')) as SwaggerDocument;
    if ((parsed as { swagger?: string }).swagger !== '2.0') throw new Error(`${full} is not Swagger 2.0`);
    return { ...parsed, file };
  });
  const swagger = createLndSwagger(documents);
  if (dir === lndSwaggerDir()) cached = swagger;
  return swagger;
}

export function createLndSwagger(documents: SwaggerDocument[]): LndSwagger {
  function findOperation(method: string, pathname: string): MatchedOperation | null {
    const segments = pathname.split('/');
    let best: { match: MatchedOperation; literals: number } | null = null;
    for (const document of documents) {
      for (const [template, operations] of Object.entries(document.paths)) {
        const operation = operations[method.toLowerCase()];
        if (operation === undefined) continue;
        const matched = matchTemplate(template, segments);
        if (matched === null) continue;
        if (best === null || matched.literals > best.literals) {
          const schema = operation.responses['200']?.schema;
          best = {
            literals: matched.literals,
            match: { document, template, method: method.toLowerCase(), operation, pathParams: matched.params, streamed: isStreamed(document, schema) },
          };
        }
      }
    }
    return best?.match ?? null;
  }

  function definition(name: string): { document: SwaggerDocument; schema: SwaggerSchema } {
    for (const document of documents) {
      const schema = document.definitions[name];
      if (schema !== undefined) return { document, schema };
    }
    throw new Error(`no definition ${name} in LND's REST description`);
  }

  function checkRequest(method: string, url: URL, body: unknown): string[] {
    const where = `${method} ${url.pathname}`;
    const match = findOperation(method, url.pathname);
    if (match === null) return [`${where}: LND has no such path and method`];
    const violations: string[] = [];
    const parameters = match.operation.parameters ?? [];
    for (const [name, value] of Object.entries(match.pathParams)) {
      const parameter = parameters.find((candidate) => candidate.in === 'path' && candidate.name === name);
      if (parameter === undefined) violations.push(`${where}: path parameter ${name} is not declared`);
      else violations.push(...checkScalarText(parameter, value, `${where} path ${name}`));
    }
    for (const [name, value] of url.searchParams) {
      const parameter = parameters.find((candidate) => candidate.in === 'query' && candidate.name === name);
      if (parameter === undefined) violations.push(`${where}: query parameter ${name} is not described by LND`);
      else violations.push(...checkScalarText(parameter, value, `${where} query ${name}`));
    }
    const bodyParameter = parameters.find((candidate) => candidate.in === 'body');
    if (bodyParameter === undefined) {
      if (body !== undefined) violations.push(`${where}: LND takes no request body here`);
    } else if (body === undefined) {
      if (bodyParameter.required === true) violations.push(`${where}: LND requires a request body`);
    } else if (bodyParameter.schema !== undefined) {
      violations.push(...checkValue(match.document, bodyParameter.schema, body, `${where} body`));
    }
    return violations;
  }

  function checkResponse(match: MatchedOperation, status: number, body: unknown): string[] {
    const where = `${match.method.toUpperCase()} ${match.template} response`;
    // A streamed call's error before any message is `{"error": status}`, which is the
    // stream wrapper: check it against the 200 schema.
    const response = status === 200 || match.streamed ? match.operation.responses['200'] : match.operation.responses['default'];
    if (response?.schema === undefined) return [`${where}: LND describes no response with status ${status}`];
    return checkValue(match.document, response.schema, body, where);
  }

  return { documents, findOperation, definition, checkRequest, checkResponse };
}

function matchTemplate(template: string, segments: string[]): { params: Record<string, string>; literals: number } | null {
  const parts = template.split('/');
  if (parts.length !== segments.length) return null;
  const params: Record<string, string> = {};
  let literals = 0;
  for (let index = 0; index < parts.length; index += 1) {
    const part = parts[index] as string;
    const segment = segments[index] as string;
    const variable = /^\{([^}=]+)(=[^}]*)?\}$/.exec(part);
    if (variable !== null) {
      if (segment === '') return null;
      params[variable[1] as string] = decodeURIComponent(segment);
    } else if (part === segment) {
      literals += 1;
    } else {
      return null;
    }
  }
  return { params, literals };
}

function isStreamed(document: SwaggerDocument, schema: SwaggerSchema | undefined): boolean {
  if (schema === undefined) return false;
  if (typeof schema.title === 'string' && schema.title.startsWith('Stream result of')) return true;
  // Older gateways put the stream wrappers under x-stream-definitions.
  return typeof schema.$ref === 'string' && schema.$ref.startsWith('#/x-stream-definitions/') && document['x-stream-definitions'] !== undefined;
}

/** Follows `#/definitions/X` (or `#/x-stream-definitions/X`) within one document. */
export function resolveRef(document: SwaggerDocument, schema: SwaggerSchema): SwaggerSchema {
  let current = schema;
  for (let depth = 0; current.$ref !== undefined; depth += 1) {
    if (depth > 32) throw new Error(`$ref loop at ${current.$ref}`);
    const pointer = current.$ref.replace(/^#\//, '').split('/');
    let target: unknown = document;
    for (const key of pointer) target = (target as Record<string, unknown> | undefined)?.[key];
    if (target === undefined) throw new Error(`${document.file}: unresolved $ref ${current.$ref}`);
    current = target as SwaggerSchema;
  }
  return current;
}

const INT64 = /^-?[0-9]{1,19}$/;
const UINT64 = /^[0-9]{1,20}$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const BASE64_URL = /^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2}(?:==)?|[A-Za-z0-9_-]{3}=?)?$/;

function checkString(format: string | undefined, enumeration: string[] | undefined, value: string, where: string): string[] {
  if (enumeration !== undefined && !enumeration.includes(value)) return [`${where}: ${JSON.stringify(value)} is not one of LND's enum names`];
  switch (format) {
    case 'int64':
      return INT64.test(value) ? [] : [`${where}: not an int64 in a string`];
    case 'uint64':
      return UINT64.test(value) ? [] : [`${where}: not a uint64 in a string`];
    case 'byte':
      return BASE64.test(value) || BASE64_URL.test(value) ? [] : [`${where}: not base64`];
    default:
      return [];
  }
}

/** A path or query value: text that must read as the declared type. */
function checkScalarText(parameter: SwaggerParameter, value: string, where: string): string[] {
  switch (parameter.type) {
    case 'boolean':
      return value === 'true' || value === 'false' ? [] : [`${where}: not a boolean`];
    case 'integer':
      return /^-?[0-9]+$/.test(value) ? [] : [`${where}: not an integer`];
    case 'number':
      return Number.isFinite(Number(value)) ? [] : [`${where}: not a number`];
    case 'string':
      return checkString(parameter.format, parameter.enum, value, where);
    case 'array':
      return parameter.items === undefined ? [] : checkString(parameter.items.format, parameter.items.enum, value, where);
    default:
      return [`${where}: parameter type ${String(parameter.type)} is not handled`];
  }
}

/** A JSON value against a schema: every field must be described, every value well formed. */
export function checkValue(document: SwaggerDocument, schemaOrRef: SwaggerSchema, value: unknown, where: string): string[] {
  const schema = resolveRef(document, schemaOrRef);
  if (value === null) return [`${where}: null is not sent by LND's gateway`];
  const type = schema.type ?? (schema.properties !== undefined ? 'object' : undefined);
  switch (type) {
    case 'string':
      return typeof value === 'string' ? checkString(schema.format, schema.enum, value, where) : [`${where}: expected a string, got ${typeof value}`];
    case 'integer':
      return typeof value === 'number' && Number.isInteger(value) ? [] : [`${where}: expected an integer`];
    case 'number':
      return typeof value === 'number' && Number.isFinite(value) ? [] : [`${where}: expected a number`];
    case 'boolean':
      return typeof value === 'boolean' ? [] : [`${where}: expected a boolean`];
    case 'array': {
      if (!Array.isArray(value)) return [`${where}: expected an array`];
      if (schema.items === undefined) return [];
      const items = schema.items;
      return value.flatMap((item, index) => checkValue(document, items, item, `${where}[${index}]`));
    }
    case 'object':
      return checkObject(document, schema, value, where);
    default:
      // No type (e.g. protobufAny's open object): anything goes.
      return [];
  }
}

function checkObject(document: SwaggerDocument, schema: SwaggerSchema, value: unknown, where: string): string[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return [`${where}: expected an object`];
  const violations: string[] = [];
  const properties = schema.properties ?? {};
  const additional = schema.additionalProperties;
  for (const [key, field] of Object.entries(value as Record<string, unknown>)) {
    const described = properties[key];
    if (described !== undefined) {
      violations.push(...checkValue(document, described, field, `${where}.${key}`));
    } else if (typeof additional === 'object') {
      violations.push(...checkValue(document, additional, field, `${where}[${JSON.stringify(key)}]`));
    } else if (additional !== true) {
      violations.push(`${where}: field ${JSON.stringify(key)} is not described by LND`);
    }
  }
  return violations;
}
