/**
 * `SELECT ... WHERE column IN (?, ?, ...)` for a list of ids, in statements of up to 256
 * parameters prepared once per size. Cheaper than passing the ids as one JSON array to
 * json_each: no JSON to build in JavaScript or to parse in SQLite.
 */
import type BetterSqlite3 from 'better-sqlite3';
import type { SqliteDatabase } from '../../db/sqlite.js';

type Statement = BetterSqlite3.Statement<unknown[], unknown>;

export const IDS_PER_STATEMENT = 256;

export interface IdListQuery {
  /** Every row whose column is one of `ids` (each id at most once in `ids`). */
  all(ids: readonly string[]): unknown[];
}

export function idListQuery(db: SqliteDatabase, sqlFor: (placeholders: string) => string): IdListQuery {
  const bySize = new Map<number, Statement>();
  const statementFor = (size: number): Statement => {
    let statement = bySize.get(size);
    if (!statement) {
      statement = db.prepare(sqlFor(Array.from({ length: size }, () => '?').join(', ')));
      bySize.set(size, statement);
    }
    return statement;
  };
  return {
    all(ids) {
      if (ids.length <= IDS_PER_STATEMENT) return ids.length === 0 ? [] : statementFor(ids.length).all(...ids);
      const rows: unknown[] = [];
      for (let first = 0; first < ids.length; first += IDS_PER_STATEMENT) {
        const chunk = ids.slice(first, first + IDS_PER_STATEMENT);
        for (const row of statementFor(chunk.length).all(...chunk)) rows.push(row);
      }
      return rows;
    },
  };
}
