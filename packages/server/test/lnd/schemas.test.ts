/**
 * Every field the LND client reads must be one LND's REST description has, with the
 * same JSON shape: the runtime schemas in src/lightning/lnd/schemas.ts are walked
 * against ../shared/reference/lnd/*.swagger.json.
 */
import { describe, expect, it } from 'vitest';
import Type from 'typebox';
import { lndSchemaSources } from '../../src/lightning/lnd/schemas.js';
import { loadLndSwagger, resolveRef, type SwaggerDocument, type SwaggerSchema } from '../support/swagger.js';

type JsonSchema = {
  type?: string;
  properties?: Record<string, JsonSchema>;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  const?: unknown;
  'x-lnd-format'?: string;
};

/** Differences between one of our schemas and LND's description of the same value. */
function walk(ours: JsonSchema, theirsOrRef: SwaggerSchema, document: SwaggerDocument, where: string): string[] {
  const theirs = resolveRef(document, theirsOrRef);
  if (ours.anyOf !== undefined) {
    if (theirs.enum === undefined) return [`${where}: we read an enum, LND describes ${theirs.type ?? 'no type'}`];
    return ours.anyOf.filter((option) => !theirs.enum?.includes(String(option.const))).map((option) => `${where}: ${String(option.const)} is not in LND's enum`);
  }
  switch (ours.type) {
    case 'object': {
      if (theirs.type !== 'object' && theirs.properties === undefined) return [`${where}: we read an object, LND describes ${theirs.type}`];
      return Object.entries(ours.properties ?? {}).flatMap(([key, field]) => {
        const described = theirs.properties?.[key];
        if (described === undefined) return [`${where}.${key}: not described by LND`];
        return walk(field, described, document, `${where}.${key}`);
      });
    }
    case 'array':
      if (theirs.type !== 'array' || theirs.items === undefined) return [`${where}: we read an array, LND describes ${theirs.type}`];
      return walk(ours.items ?? {}, theirs.items, document, `${where}[]`);
    case 'string': {
      if (theirs.type !== 'string') return [`${where}: we read a string, LND describes ${theirs.type}`];
      const ourFormat = ours['x-lnd-format'];
      if (ourFormat !== undefined && ourFormat !== theirs.format) return [`${where}: we read ${ourFormat}, LND describes ${theirs.format ?? 'plain text'}`];
      if (ourFormat === undefined && ['int64', 'uint64', 'byte'].includes(theirs.format ?? '')) {
        return [`${where}: LND describes ${theirs.format}, which we read as plain text`];
      }
      return [];
    }
    case 'integer':
    case 'boolean':
      return theirs.type === ours.type ? [] : [`${where}: we read ${ours.type}, LND describes ${theirs.type}`];
    default:
      return [`${where}: the walk does not handle ${JSON.stringify(ours)}`];
  }
}

function describedBy(source: (typeof lndSchemaSources)[number]['source']): { document: SwaggerDocument; schema: SwaggerSchema } {
  const swagger = loadLndSwagger();
  if ('definition' in source) return swagger.definition(source.definition);
  const match = swagger.findOperation(source.operation.method, source.operation.path);
  if (match === null) throw new Error(`LND has no ${source.operation.method} ${source.operation.path}`);
  const schema = match.operation.responses['200']?.schema;
  if (schema === undefined) throw new Error(`LND describes no 200 response for ${source.operation.path}`);
  return { document: match.document, schema };
}

describe('LND response schemas against the swagger', () => {
  it.each(lndSchemaSources.map((row) => [row.name, row] as const))('%s reads only described fields', (_name, row) => {
    const { document, schema } = describedBy(row.source);
    expect(walk(row.schema as JsonSchema, schema, document, row.name)).toEqual([]);
  });

  it('the walk itself catches an undescribed field, a wrong format and an unknown enum value', () => {
    const { document, schema } = loadLndSwagger().definition('lnrpcInvoice');
    const wrong = Type.Object({
      r_hash: Type.String({ 'x-lnd-format': 'int64' }),
      no_such_field: Type.String(),
      value_msat: Type.String(),
      state: Type.Union([Type.Literal('OPEN'), Type.Literal('HALF_PAID')]),
    });
    expect(walk(wrong as JsonSchema, schema, document, 'wrong')).toEqual([
      'wrong.r_hash: we read int64, LND describes byte',
      'wrong.no_such_field: not described by LND',
      'wrong.value_msat: LND describes int64, which we read as plain text',
      "wrong.state: HALF_PAID is not in LND's enum",
    ]);
  });
});
