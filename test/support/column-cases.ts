// Column migrations inside one table, as lifecycle cases: v1 of the
// application writes and reads the old column names, v2 the new ones. Data is
// round-trippable (words without spaces, integral amounts, timestamps to the
// microsecond), so after every stage both old = down(row) and new = up(row)
// hold exactly.
import { type MappingCase, type Stmt, type WorkloadContext, weighted } from './mapping-cases.ts';

export interface ColumnCase {
  base: MappingCase;
  /** One random write by the new column names (v2). */
  writeNew(ctx: WorkloadContext): Stmt;
  readsNew: Stmt[];
  /** The old columns, dropped at the contract step. */
  oldColumns: string[];
}

const DEADLOCK = ['40P01'];

/** Rename: customers.display becomes customers.nickname. */
export const renameColumn: ColumnCase = {
  base: {
    name: 'column-rename',
    setup: `
      CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL, display text, visits int NOT NULL DEFAULT 0);
      INSERT INTO customers SELECT g, 'c' || g || '@example.com', 'name' || g, 0 FROM generate_series(1, 120) g;`,
    seededKeys: 120,
    expand: 'ALTER TABLE customers ADD COLUMN nickname text',
    mapping: {
      name: 'customers-nickname',
      old: 'customers',
      new: 'customers',
      key: ['id'],
      up: { nickname: 'display' },
      down: { display: 'nickname' },
    },
    write: (ctx) =>
      weighted(ctx, [
        [
          3,
          () => ({
            sql: 'INSERT INTO customers (id, email, display) VALUES ($1, $2, $3)',
            params: [ctx.fresh(), `${ctx.word()}@example.com`, ctx.word()],
          }),
        ],
        [
          3,
          () => ({
            sql: 'UPDATE customers SET display = $1 WHERE id = $2',
            params: [ctx.word(), ctx.existing()],
          }),
        ],
        [
          2,
          () => ({ sql: 'UPDATE customers SET visits = visits + 1 WHERE id = $1', params: [ctx.existing()] }),
        ],
        [
          1,
          () => ({
            sql: 'INSERT INTO customers (id, email, display) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET display = EXCLUDED.display',
            // Only seeded keys: a key handed out but not inserted yet would make its own INSERT fail.
            params: [ctx.int(1, 120), `${ctx.word()}@example.org`, ctx.word()],
          }),
        ],
        [1, () => ({ sql: 'DELETE FROM customers WHERE id = $1', params: [ctx.existing()] })],
      ]),
    reads: [
      { sql: 'SELECT id, email, display FROM customers ORDER BY id', params: [] },
      {
        sql: 'SELECT display, count(*) FROM customers GROUP BY display ORDER BY 2 DESC, 1 LIMIT 5',
        params: [],
      },
    ],
    allowedErrors: DEADLOCK,
  },
  writeNew: (ctx) =>
    weighted(ctx, [
      [
        3,
        () => ({
          sql: 'INSERT INTO customers (id, email, nickname) VALUES ($1, $2, $3) RETURNING nickname',
          params: [ctx.fresh(), `${ctx.word()}@v2.example.com`, ctx.word()],
        }),
      ],
      [
        3,
        () => ({
          sql: 'UPDATE customers SET nickname = $1 WHERE id = $2',
          params: [ctx.word(), ctx.existing()],
        }),
      ],
      [1, () => ({ sql: 'DELETE FROM customers WHERE id = $1', params: [ctx.existing()] })],
    ]),
  readsNew: [{ sql: 'SELECT id, nickname FROM customers ORDER BY id', params: [] }],
  oldColumns: ['display'],
};

/** Type change in place: amount int -> amount_big bigint, happened_at timestamp -> happened_tz timestamptz. */
export const typeChangeColumns: ColumnCase = {
  base: {
    name: 'column-type-change',
    setup: `
      CREATE TABLE ledger (id int PRIMARY KEY, amount int NOT NULL, happened_at timestamp NOT NULL);
      INSERT INTO ledger SELECT g, g * 3, timestamp '2024-01-01' + g * interval '1 hour 0.5 seconds'
        FROM generate_series(1, 130) g;`,
    seededKeys: 130,
    expand: 'ALTER TABLE ledger ADD COLUMN amount_big bigint, ADD COLUMN happened_tz timestamptz',
    mapping: {
      name: 'ledger-types',
      old: 'ledger',
      new: 'ledger',
      key: ['id'],
      up: { amount_big: 'amount', happened_tz: "happened_at AT TIME ZONE 'UTC'" },
      down: { amount: 'amount_big::int', happened_at: "happened_tz AT TIME ZONE 'UTC'" },
    },
    write: (ctx) =>
      weighted(ctx, [
        [
          3,
          () => ({
            sql: 'INSERT INTO ledger (id, amount, happened_at) VALUES ($1, $2, $3::timestamp)',
            params: [
              ctx.fresh(),
              ctx.int(-500, 500),
              `2025-0${ctx.int(1, 9)}-1${ctx.int(0, 9)} 0${ctx.int(0, 9)}:30:00.${ctx.int(100000, 999999)}`,
            ],
          }),
        ],
        [
          3,
          () => ({
            sql: 'UPDATE ledger SET amount = amount + $1 WHERE id = $2',
            params: [ctx.int(1, 9), ctx.existing()],
          }),
        ],
        [
          1,
          () => ({
            sql: "UPDATE ledger SET happened_at = happened_at + interval '1 minute' WHERE id = $1 RETURNING happened_at",
            params: [ctx.existing()],
          }),
        ],
        [1, () => ({ sql: 'DELETE FROM ledger WHERE id = $1', params: [ctx.existing()] })],
      ]),
    reads: [
      { sql: 'SELECT * FROM ledger ORDER BY id', params: [] },
      {
        sql: "SELECT date_trunc('day', happened_at) AS d, sum(amount) FROM ledger GROUP BY 1 ORDER BY 1",
        params: [],
      },
    ],
    allowedErrors: DEADLOCK,
  },
  writeNew: (ctx) =>
    weighted(ctx, [
      [
        3,
        () => ({
          sql: 'INSERT INTO ledger (id, amount_big, happened_tz) VALUES ($1, $2, $3::timestamptz)',
          params: [
            ctx.fresh(),
            ctx.int(-500, 500),
            `2026-0${ctx.int(1, 9)}-0${ctx.int(1, 9)} 1${ctx.int(0, 9)}:00:00.${ctx.int(100000, 999999)}+00`,
          ],
        }),
      ],
      [
        3,
        () => ({
          sql: 'UPDATE ledger SET amount_big = amount_big * 2 WHERE id = $1',
          params: [ctx.existing()],
        }),
      ],
      [1, () => ({ sql: 'DELETE FROM ledger WHERE id = $1', params: [ctx.existing()] })],
    ]),
  readsNew: [{ sql: 'SELECT id, amount_big, happened_tz FROM ledger ORDER BY id', params: [] }],
  oldColumns: ['amount', 'happened_at'],
};

/** Split: full_name -> first_name, last_name. */
export const splitColumn: ColumnCase = {
  base: {
    name: 'column-split',
    setup: `
      CREATE TABLE authors (id serial PRIMARY KEY, full_name text NOT NULL, books int NOT NULL DEFAULT 0);
      INSERT INTO authors (full_name) SELECT 'first' || g || ' last' || g FROM generate_series(1, 110) g;`,
    seededKeys: 110,
    expand: 'ALTER TABLE authors ADD COLUMN first_name text, ADD COLUMN last_name text',
    mapping: {
      name: 'authors-split',
      old: 'authors',
      new: 'authors',
      key: ['id'],
      up: { first_name: "split_part(full_name, ' ', 1)", last_name: "split_part(full_name, ' ', 2)" },
      down: { full_name: "first_name || ' ' || last_name" },
    },
    write: (ctx) =>
      weighted(ctx, [
        [
          3,
          () => {
            ctx.fresh();
            return {
              sql: 'INSERT INTO authors (full_name) VALUES ($1) RETURNING id',
              params: [`${ctx.word()} ${ctx.word()}`],
            };
          },
        ],
        [
          3,
          () => ({
            sql: 'UPDATE authors SET full_name = $1 WHERE id = $2',
            params: [`${ctx.word()} ${ctx.word()}`, ctx.existing()],
          }),
        ],
        [2, () => ({ sql: 'UPDATE authors SET books = books + 1 WHERE id = $1', params: [ctx.existing()] })],
        [1, () => ({ sql: 'DELETE FROM authors WHERE id = $1', params: [ctx.existing()] })],
      ]),
    reads: [{ sql: 'SELECT id, full_name FROM authors ORDER BY id', params: [] }],
    allowedErrors: DEADLOCK,
  },
  writeNew: (ctx) =>
    weighted(ctx, [
      [
        3,
        () => {
          ctx.fresh();
          return {
            sql: 'INSERT INTO authors (first_name, last_name) VALUES ($1, $2)',
            params: [ctx.word(), ctx.word()],
          };
        },
      ],
      [
        3,
        () => ({
          sql: 'UPDATE authors SET last_name = $1 WHERE id = $2',
          params: [ctx.word(), ctx.existing()],
        }),
      ],
      [1, () => ({ sql: 'DELETE FROM authors WHERE id = $1', params: [ctx.existing()] })],
    ]),
  readsNew: [{ sql: 'SELECT id, first_name, last_name FROM authors ORDER BY id', params: [] }],
  oldColumns: ['full_name'],
};

/** Merge: first_name, last_name -> full_name. */
export const mergeColumns: ColumnCase = {
  base: {
    name: 'column-merge',
    setup: `
      CREATE TABLE contacts (id int PRIMARY KEY, first_name text NOT NULL, last_name text NOT NULL);
      INSERT INTO contacts SELECT g, 'first' || g, 'last' || g FROM generate_series(1, 100) g;`,
    seededKeys: 100,
    expand: 'ALTER TABLE contacts ADD COLUMN full_name text',
    mapping: {
      name: 'contacts-merge',
      old: 'contacts',
      new: 'contacts',
      key: ['id'],
      up: { full_name: "first_name || ' ' || last_name" },
      down: { first_name: "split_part(full_name, ' ', 1)", last_name: "split_part(full_name, ' ', 2)" },
    },
    write: (ctx) =>
      weighted(ctx, [
        [
          3,
          () => ({
            sql: 'INSERT INTO contacts (id, first_name, last_name) VALUES ($1, $2, $3)',
            params: [ctx.fresh(), ctx.word(), ctx.word()],
          }),
        ],
        [
          3,
          () => ({
            sql: 'UPDATE contacts SET first_name = $1 WHERE id = $2',
            params: [ctx.word(), ctx.existing()],
          }),
        ],
        [1, () => ({ sql: 'DELETE FROM contacts WHERE id = $1', params: [ctx.existing()] })],
      ]),
    reads: [{ sql: 'SELECT * FROM contacts ORDER BY id', params: [] }],
    allowedErrors: DEADLOCK,
  },
  writeNew: (ctx) =>
    weighted(ctx, [
      [
        3,
        () => ({
          sql: 'INSERT INTO contacts (id, full_name) VALUES ($1, $2)',
          params: [ctx.fresh(), `${ctx.word()} ${ctx.word()}`],
        }),
      ],
      [
        3,
        () => ({
          sql: 'UPDATE contacts SET full_name = $1 WHERE id = $2',
          params: [`${ctx.word()} ${ctx.word()}`, ctx.existing()],
        }),
      ],
      [1, () => ({ sql: 'DELETE FROM contacts WHERE id = $1', params: [ctx.existing()] })],
    ]),
  readsNew: [{ sql: 'SELECT id, full_name FROM contacts ORDER BY id', params: [] }],
  oldColumns: ['first_name', 'last_name'],
};
