// The second app version of each lifecycle shape (test/support/mapping-cases.ts):
// the writes and reads it makes by the NEW table's names. Data stays
// round-trippable (one space between the parts of a full name, jsonb's own
// text form), so that after every stage old = down(new) and new = up(old)
// hold exactly.
import {
  compositeKeyCase,
  identifiersCase,
  type MappingCase,
  renameCase,
  type Stmt,
  splitMergeCase,
  typeChangeCase,
  type WorkloadContext,
  weighted,
} from './mapping-cases.ts';

export interface RolloutCase {
  base: MappingCase;
  /** One random write by the new names. */
  writeNew(ctx: WorkloadContext): Stmt;
  /** Reads by the new names: through the proxy they must equal the same read straight on Postgres. */
  readsNew: Stmt[];
  /** The old and the new table's keys, listed in the same order and form (for the "no row vanishes" check). */
  keysOld: string;
  keysNew: string;
}

export const renameRollout: RolloutCase = {
  base: renameCase,
  writeNew: (ctx) =>
    weighted(ctx, [
      [
        3,
        () => ({
          sql: 'INSERT INTO members (member_id, email_address, nickname, balance_cents, joined_at) VALUES ($1, $2, $3, $4, now())',
          params: [ctx.fresh(), `${ctx.word()}@v2.example.com`, ctx.word(), ctx.int(0, 500)],
        }),
      ],
      [
        3,
        () => ({
          sql: 'UPDATE members SET balance_cents = balance_cents + $1 WHERE member_id = $2',
          params: [ctx.int(-20, 20), ctx.existing()],
        }),
      ],
      [
        1,
        () => ({
          sql: 'UPDATE members m SET nickname = $1 WHERE m.member_id = $2 RETURNING *',
          params: [ctx.word(), ctx.existing()],
        }),
      ],
      [
        1,
        () => ({
          sql:
            'INSERT INTO members (member_id, email_address, nickname, balance_cents, joined_at) VALUES ($1, $2, $3, 0, now()) ' +
            'ON CONFLICT (member_id) DO UPDATE SET nickname = EXCLUDED.nickname',
          params: [ctx.existing(), `${ctx.word()}@v2.example.org`, ctx.word()],
        }),
      ],
      [1, () => ({ sql: 'DELETE FROM members WHERE member_id = $1', params: [ctx.existing()] })],
    ]),
  readsNew: [
    { sql: 'SELECT * FROM members ORDER BY member_id', params: [] },
    { sql: 'SELECT count(*), sum(balance_cents) FROM members WHERE nickname IS NOT NULL', params: [] },
  ],
  keysOld: 'SELECT id::text AS k FROM accounts ORDER BY 1',
  keysNew: 'SELECT member_id::text AS k FROM members ORDER BY 1',
};

export const splitMergeRollout: RolloutCase = {
  base: splitMergeCase,
  writeNew: (ctx) =>
    weighted(ctx, [
      [
        3,
        () => {
          // The key comes from the old table's sequence (the expand step made it new's default).
          ctx.fresh();
          return {
            sql: 'INSERT INTO people_v2 (full_name, age) VALUES ($1, $2) RETURNING id',
            params: [`${ctx.word()} ${ctx.word()}`, ctx.int(1, 99)],
          };
        },
      ],
      [
        3,
        () => ({
          sql: 'UPDATE people_v2 SET full_name = $1 WHERE id = $2',
          params: [`${ctx.word()} ${ctx.word()}`, ctx.existing()],
        }),
      ],
      [1, () => ({ sql: 'UPDATE people_v2 SET age = age + 1 WHERE id = $1', params: [ctx.existing()] })],
      [1, () => ({ sql: 'DELETE FROM people_v2 WHERE id = $1', params: [ctx.existing()] })],
    ]),
  readsNew: [{ sql: 'SELECT * FROM people_v2 ORDER BY id', params: [] }],
  keysOld: 'SELECT id::text AS k FROM people ORDER BY 1',
  keysNew: 'SELECT id::text AS k FROM people_v2 ORDER BY 1',
};

export const typeChangeRollout: RolloutCase = {
  base: typeChangeCase,
  writeNew: (ctx) =>
    weighted(ctx, [
      [
        3,
        () => ({
          sql: 'INSERT INTO events_v2 (id, counter, happened_at, payload) VALUES ($1, 0, $2::timestamptz, $3::jsonb)',
          params: [
            ctx.fresh(),
            `2026-0${ctx.int(1, 9)}-1${ctx.int(0, 9)} 1${ctx.int(0, 9)}:${ctx.int(10, 59)}:00.${ctx.int(100000, 999999)}+00`,
            `{"n": ${ctx.int(0, 1000)}, "tag": "v2"}`,
          ],
        }),
      ],
      [
        3,
        () => ({ sql: 'UPDATE events_v2 SET counter = counter + 1 WHERE id = $1', params: [ctx.existing()] }),
      ],
      [
        1,
        () => ({
          sql: `UPDATE events_v2 SET payload = payload || '{"v2": true}'::jsonb WHERE id = $1 RETURNING payload`,
          params: [ctx.existing()],
        }),
      ],
      [1, () => ({ sql: 'DELETE FROM events_v2 WHERE id = $1', params: [ctx.existing()] })],
    ]),
  readsNew: [{ sql: "SELECT id, payload->>'tag' AS tag FROM events_v2 ORDER BY id", params: [] }],
  keysOld: 'SELECT id::text AS k FROM events ORDER BY 1',
  keysNew: 'SELECT id::text AS k FROM events_v2 ORDER BY 1',
};

export const compositeKeyRollout: RolloutCase = {
  base: compositeKeyCase,
  writeNew: (ctx) => {
    const existingLine = (): [number, number] => {
      const l = ctx.existing();
      return [l <= 6 ? ctx.int(1, 20) : (l % 20) + 1, l];
    };
    return weighted(ctx, [
      [
        3,
        () => {
          const l = ctx.fresh();
          return {
            sql: 'INSERT INTO line_items_v2 (order_id, line_no, sku, quantity) VALUES ($1, $2, $3, $4)',
            params: [(l % 20) + 1, l, `sku-v2-${ctx.word()}`, ctx.int(1, 9)],
          };
        },
      ],
      [
        2,
        () => ({
          sql: 'UPDATE line_items_v2 SET quantity = quantity + 1 WHERE order_id = $1 AND line_no = $2',
          params: existingLine(),
        }),
      ],
      [
        1,
        () => ({
          // A key move through the new name: old must follow.
          sql: 'UPDATE line_items_v2 SET line_no = line_no + 200000 WHERE order_id = $1 AND line_no = $2',
          params: existingLine(),
        }),
      ],
      [
        1,
        () => ({
          sql: 'DELETE FROM line_items_v2 WHERE order_id = $1 AND line_no = $2',
          params: existingLine(),
        }),
      ],
    ]);
  },
  readsNew: [{ sql: 'SELECT * FROM line_items_v2 ORDER BY order_id, line_no', params: [] }],
  keysOld: "SELECT order_id || '/' || line_no AS k FROM line_items ORDER BY 1",
  keysNew: "SELECT order_id || '/' || line_no AS k FROM line_items_v2 ORDER BY 1",
};

export const identifiersRollout: RolloutCase = {
  base: identifiersCase,
  writeNew: (ctx) =>
    weighted(ctx, [
      [
        3,
        () => ({
          sql: 'INSERT INTO public."Commande_é" ("Id", "user-name", "from", "prénom") VALUES ($1, $2, $3, $4)',
          params: [ctx.fresh(), `user-v2-${ctx.word()}`, ctx.int(0, 3), ctx.word()],
        }),
      ],
      [
        2,
        () => ({
          sql: 'UPDATE "Commande_é" SET "from" = "from" + 1 WHERE "Id" = $1',
          params: [ctx.existing()],
        }),
      ],
      [1, () => ({ sql: 'DELETE FROM "Commande_é" c WHERE c."Id" = $1', params: [ctx.existing()] })],
    ]),
  readsNew: [{ sql: 'SELECT * FROM "Commande_é" ORDER BY "Id"', params: [] }],
  keysOld: 'SELECT "Id"::text AS k FROM "Order" ORDER BY 1',
  keysNew: 'SELECT "Id"::text AS k FROM "Commande_é" ORDER BY 1',
};
