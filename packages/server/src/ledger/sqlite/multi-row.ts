/**
 * Runs one statement for many rows: the rows go out in statements of up to `rowsPerStatement`
 * rows each (`VALUES (...), (...), ...`), so a batch of 256 transfers costs a handful of
 * statement runs instead of 256. Statements are prepared once per connection and size.
 */
import type BetterSqlite3 from 'better-sqlite3';
import type { SqliteDatabase } from '../../db/sqlite.js';

type Statement = BetterSqlite3.Statement<unknown[], unknown>;

export interface MultiRowStatement {
  /** `values` holds `rows * columns` parameters, row after row; returns the rows changed. */
  run(values: readonly unknown[], rows: number): number;
}

/**
 * `sqlFor(valuesList)` builds the statement around a `(?, ...), (?, ...)` list. SQLite allows
 * 32766 parameters per statement; `columns * rowsPerStatement` must stay below that.
 */
export function multiRowStatement(
  db: SqliteDatabase,
  columns: number,
  rowsPerStatement: number,
  sqlFor: (valuesList: string) => string,
): MultiRowStatement {
  if (columns * rowsPerStatement > 32_766) throw new RangeError('too many parameters per statement');
  const row = `(${Array.from({ length: columns }, () => '?').join(', ')})`;
  const bySize = new Map<number, Statement>();
  const statementFor = (rows: number): Statement => {
    let statement = bySize.get(rows);
    if (!statement) {
      statement = db.prepare(sqlFor(Array.from({ length: rows }, () => row).join(', ')));
      bySize.set(rows, statement);
    }
    return statement;
  };
  return {
    run(values, rows) {
      if (values.length !== rows * columns) throw new Error(`expected ${rows * columns} values, got ${values.length}`);
      let changes = 0;
      for (let first = 0; first < rows; first += rowsPerStatement) {
        const count = Math.min(rowsPerStatement, rows - first);
        // Full chunks share one statement; the remainder (at most one per call) gets its own size.
        const chunk = values.slice(first * columns, (first + count) * columns);
        changes += statementFor(count).run(...chunk).changes;
      }
      return changes;
    },
  };
}
