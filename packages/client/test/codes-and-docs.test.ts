// The SDK's public surface: its error codes are exactly the server's registry
// (packages/server/src/errors/codes.ts), and every export, and every public method of
// SluiceClient, has TSDoc with an @example (STYLE.md: "Every SDK export has TSDoc with an
// @example").
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../server/src/errors/codes.js';
import { SLUICE_CLIENT_ERROR_CODES, SLUICE_ERROR_CODES, isSluiceServerErrorCode } from '../src/index.js';

describe('error codes', () => {
  it('SLUICE_ERROR_CODES lists the server codes, in the same order', () => {
    expect([...SLUICE_ERROR_CODES]).toEqual(Object.keys(ERROR_CODES));
  });

  it('the SDK-only codes never clash with a server code', () => {
    for (const code of SLUICE_CLIENT_ERROR_CODES) {
      expect(isSluiceServerErrorCode(code)).toBe(false);
      expect(Object.keys(ERROR_CODES)).not.toContain(code);
    }
  });
});

describe('TSDoc', () => {
  const indexPath = fileURLToPath(new URL('../src/index.ts', import.meta.url));
  const program = ts.createProgram([indexPath], { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, lib: ['lib.es2023.d.ts', 'lib.dom.d.ts'], noEmit: true });
  const checker = program.getTypeChecker();
  const moduleSymbol = checker.getSymbolAtLocation(program.getSourceFile(indexPath) as ts.SourceFile) as ts.Symbol;

  const hasExample = (node: ts.Node): boolean => ts.getJSDocTags(node).some((tag) => tag.tagName.text === 'example');

  const exports = checker.getExportsOfModule(moduleSymbol);

  it('exports the names the SDK promises', () => {
    const names = exports.map((symbol) => symbol.name);
    for (const name of ['SluiceClient', 'SluiceError', 'SLUICE_ERROR_CODES', 'newIdempotencyKey', 'SluiceErrorCode']) expect(names).toContain(name);
  });

  for (const symbol of exports) {
    it(`${symbol.name} has an @example`, () => {
      const target = symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
      const declaration = target.declarations?.[0];
      expect(declaration).toBeDefined();
      // A `const` is documented on its statement, two levels up from the declaration.
      const documented = ts.isVariableDeclaration(declaration as ts.Node) ? (declaration as ts.Node).parent.parent : (declaration as ts.Node);
      expect(hasExample(documented)).toBe(true);
    });
  }

  it('every public method of SluiceClient has an @example', () => {
    const client = exports.find((symbol) => symbol.name === 'SluiceClient') as ts.Symbol;
    const declaration = checker.getAliasedSymbol(client).declarations?.[0] as ts.ClassDeclaration;
    const methods = declaration.members.filter(
      (member): member is ts.MethodDeclaration => ts.isMethodDeclaration(member) && !ts.isPrivateIdentifier(member.name),
    );
    expect(methods.length).toBeGreaterThanOrEqual(17);
    const missing = methods.filter((method) => !hasExample(method)).map((method) => method.name.getText());
    expect(missing).toEqual([]);
  });
});
