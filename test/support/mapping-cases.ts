// Mapping shapes driven through the lifecycle harness (test/support/lifecycle.ts).
// Each case is self-contained: the old table and its rows, the expand step,
// the mapping, a seeded generator of writes on the old table, and reads whose
// results must not depend on which table serves them.

/** One statement with $n placeholders; the harness sends it simple (values inlined) or extended. */
export interface Stmt {
  sql: string;
  params: unknown[];
}

/** What a write generator may draw from. Keys are shared by all clients of one run. */
export interface WorkloadContext {
  random(): number;
  int(lo: number, hi: number): number;
  pick<T>(xs: readonly T[]): T;
  /** A key value no client has used before in this run. */
  fresh(): number;
  /** A key value that was handed out before (seeded or inserted), so probably exists. */
  existing(): number;
  /** A short word without spaces, sometimes non-ASCII. */
  word(): string;
}

export interface MappingDefinition {
  name: string;
  old: string;
  new: string;
  key: string[];
  up: Record<string, string>;
  down: Record<string, string>;
}

export interface MappingCase {
  /** Test title and mapping name. */
  name: string;
  /** Creates the old table and the rows that predate dual-write. */
  setup: string;
  /** Key values 1..seededKeys exist after setup; fresh() starts above them. */
  seededKeys: number;
  /** The expand step: creates the new table. */
  expand: string;
  mapping: MappingDefinition;
  /** One random write on the old table. */
  write(ctx: WorkloadContext): Stmt;
  /** Reads of the old table: through the proxy they must equal the same read straight on Postgres. */
  reads: Stmt[];
  /** SQLSTATEs a write may legitimately fail with under concurrency (the statement is then a no-op). */
  allowedErrors: string[];
}

/** Deterministic PRNG (mulberry32): the same seed gives the same workload. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'Zoë', 'Ñandú', '日本語', 'Ærø', "o'hara"];

export function workloadContext(random: () => number, keys: { next: number }): WorkloadContext {
  const int = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
  return {
    random,
    int,
    pick: (xs) => xs[Math.floor(random() * xs.length)],
    fresh: () => keys.next++,
    existing: () => int(1, Math.max(1, keys.next - 1)),
    word: () => `${WORDS[Math.floor(random() * WORDS.length)]}${int(0, 999)}`,
  };
}

/** Picks one generator by weight. */
export function weighted(ctx: WorkloadContext, choices: [number, () => Stmt][]): Stmt {
  const total = choices.reduce((s, [w]) => s + w, 0);
  let r = ctx.random() * total;
  for (const [w, f] of choices) {
    r -= w;
    if (r < 0) return f();
  }
  return choices[choices.length - 1][1]();
}

/** Rename of the table and of every column. */
export const renameCase: MappingCase = {
  name: 'rename',
  setup: `
    CREATE TABLE accounts (
      id int PRIMARY KEY, email text NOT NULL, display text, balance int NOT NULL DEFAULT 0,
      created_at timestamp NOT NULL DEFAULT now());
    INSERT INTO accounts (id, email, display, balance)
      SELECT g, 'user' || g || '@example.com', 'name' || g, g * 10 FROM generate_series(1, 120) g;`,
  seededKeys: 120,
  expand: `
    CREATE TABLE members (
      member_id int PRIMARY KEY, email_address text NOT NULL, nickname text, balance_cents int NOT NULL,
      joined_at timestamp NOT NULL);`,
  mapping: {
    name: 'accounts-to-members',
    old: 'accounts',
    new: 'members',
    key: ['member_id'],
    up: {
      member_id: 'id',
      email_address: 'email',
      nickname: 'display',
      balance_cents: 'balance',
      joined_at: 'created_at',
    },
    down: {
      id: 'member_id',
      email: 'email_address',
      display: 'nickname',
      balance: 'balance_cents',
      created_at: 'joined_at',
    },
  },
  write: (ctx) =>
    weighted(ctx, [
      [
        3,
        () => ({
          sql: 'INSERT INTO accounts (id, email, display, balance) VALUES ($1, $2, $3, $4)',
          params: [ctx.fresh(), `${ctx.word()}@example.com`, ctx.word(), ctx.int(0, 500)],
        }),
      ],
      [
        1,
        () => ({
          sql: 'INSERT INTO accounts (id, email, display) VALUES ($1, $2, $3) RETURNING id, created_at',
          params: [ctx.fresh(), `${ctx.word()}@example.org`, null],
        }),
      ],
      [
        3,
        () => ({
          sql: 'UPDATE accounts SET balance = balance + $1 WHERE id = $2',
          params: [ctx.int(-20, 20), ctx.existing()],
        }),
      ],
      [
        1,
        () => ({
          sql: 'UPDATE accounts SET display = $1, email = $2 WHERE id = $3 RETURNING *',
          params: [ctx.word(), `${ctx.word()}@example.net`, ctx.existing()],
        }),
      ],
      [
        1,
        () => {
          const lo = ctx.existing();
          return {
            sql: 'UPDATE accounts SET balance = balance - 1 WHERE id BETWEEN $1 AND $2',
            params: [lo, lo + 2],
          };
        },
      ],
      [1, () => ({ sql: 'DELETE FROM accounts WHERE id = $1', params: [ctx.existing()] })],
      [
        1,
        () => ({ sql: 'DELETE FROM accounts a WHERE a.id = $1 RETURNING a.email', params: [ctx.existing()] }),
      ],
    ]),
  reads: [
    { sql: 'SELECT * FROM accounts ORDER BY id', params: [] },
    {
      sql: 'SELECT id, email FROM accounts WHERE balance > $1 ORDER BY balance DESC, id LIMIT 20',
      params: [100],
    },
    { sql: 'SELECT count(*), sum(balance) FROM accounts', params: [] },
    {
      sql: 'SELECT a.display FROM accounts a WHERE a.id = ANY($1::int[]) ORDER BY a.id',
      params: [[1, 2, 3, 50]],
    },
    {
      sql: 'SELECT a.id, b.balance FROM accounts a JOIN accounts b ON b.id = a.id + 1 WHERE a.id < $1 ORDER BY 1',
      params: [30],
    },
  ],
  allowedErrors: ['40P01'],
};

/** Computed merge: first_name, last_name -> full_name (and back by split_part). */
export const splitMergeCase: MappingCase = {
  name: 'split-merge',
  setup: `
    CREATE TABLE people (id serial PRIMARY KEY, first_name text NOT NULL, last_name text NOT NULL, age int);
    INSERT INTO people (first_name, last_name, age)
      SELECT 'first' || g, 'last' || g, g % 90 FROM generate_series(1, 150) g;`,
  seededKeys: 150,
  // Rows inserted by the new name (a second app version) take their key from old's sequence.
  expand:
    "CREATE TABLE people_v2 (id int PRIMARY KEY DEFAULT nextval('people_id_seq'), full_name text NOT NULL, age int);",
  mapping: {
    name: 'people-full-name',
    old: 'people',
    new: 'people_v2',
    key: ['id'],
    up: { id: 'id', full_name: "first_name || ' ' || last_name", age: 'age' },
    down: {
      id: 'id',
      first_name: "split_part(full_name, ' ', 1)",
      last_name: "split_part(full_name, ' ', 2)",
      age: 'age',
    },
  },
  write: (ctx) =>
    weighted(ctx, [
      [
        3,
        () => {
          ctx.fresh();
          return {
            sql: 'INSERT INTO people (first_name, last_name, age) VALUES ($1, $2, $3)',
            params: [ctx.word(), ctx.word(), ctx.int(1, 99)],
          };
        },
      ],
      [
        1,
        () => {
          ctx.fresh();
          ctx.fresh();
          return {
            sql: 'INSERT INTO people (first_name, last_name) VALUES ($1, $2), ($3, $4) RETURNING id',
            params: [ctx.word(), ctx.word(), ctx.word(), ctx.word()],
          };
        },
      ],
      [
        3,
        () => ({
          sql: 'UPDATE people SET last_name = $1 WHERE id = $2',
          params: [ctx.word(), ctx.existing()],
        }),
      ],
      [
        1,
        () => ({
          sql: 'UPDATE people SET age = age + 1 WHERE age < $1 AND id % 7 = $2',
          params: [ctx.int(10, 40), ctx.int(0, 6)],
        }),
      ],
      [
        1,
        () => ({
          sql:
            'INSERT INTO people (id, first_name, last_name, age) VALUES ($1, $2, $3, $4) ' +
            'ON CONFLICT (id) DO UPDATE SET age = EXCLUDED.age, first_name = EXCLUDED.first_name',
          // Only ids the serial sequence has already handed out (the seeded
          // rows): an explicit id the sequence has yet to reach would make a
          // later plain INSERT fail with 23505, on Postgres alone too.
          params: [ctx.int(1, 150), ctx.word(), ctx.word(), ctx.int(1, 99)],
        }),
      ],
      [1, () => ({ sql: 'DELETE FROM people WHERE id = $1', params: [ctx.existing()] })],
    ]),
  reads: [
    { sql: 'SELECT * FROM people ORDER BY id', params: [] },
    {
      sql: 'SELECT first_name, count(*) FROM people GROUP BY first_name ORDER BY 2 DESC, 1 LIMIT 10',
      params: [],
    },
    {
      sql: 'SELECT p.id, p.last_name FROM people p WHERE p.last_name LIKE $1 ORDER BY p.id',
      params: ['last1%'],
    },
    {
      sql: 'SELECT id FROM people WHERE id IN (SELECT id FROM people WHERE age > $1) ORDER BY id DESC LIMIT 5',
      params: [50],
    },
  ],
  allowedErrors: ['40P01'],
};

/** Type changes with casts: int -> bigint, timestamp -> timestamptz, text -> jsonb. */
export const typeChangeCase: MappingCase = {
  name: 'type-change',
  setup: `
    CREATE TABLE events (id int PRIMARY KEY, counter int NOT NULL DEFAULT 0, happened_at timestamp NOT NULL,
      payload text NOT NULL);
    INSERT INTO events
      SELECT g, g, timestamp '2024-01-01' + g * interval '7 minutes 3.25 seconds',
             '{"n": ' || g || ', "tag": "t' || (g % 5) || '"}'
        FROM generate_series(1, 130) g;`,
  seededKeys: 130,
  expand: `CREATE TABLE events_v2 (id bigint PRIMARY KEY, counter bigint NOT NULL,
      happened_at timestamptz NOT NULL, payload jsonb NOT NULL);`,
  mapping: {
    name: 'events-types',
    old: 'events',
    new: 'events_v2',
    key: ['id'],
    up: {
      id: 'id',
      counter: 'counter',
      happened_at: "happened_at AT TIME ZONE 'UTC'",
      payload: 'payload::jsonb',
    },
    down: {
      id: 'id::int',
      counter: 'counter::int',
      happened_at: "happened_at AT TIME ZONE 'UTC'",
      payload: 'payload::text',
    },
  },
  write: (ctx) => {
    // jsonb's own text form (keys by length, ", " and ": "), so text -> jsonb -> text is the identity.
    const payload = () => `{"n": ${ctx.int(0, 1000)}, "tag": "${ctx.pick(['t0', 't1', 't2', 'ü', 'x y'])}"}`;
    return weighted(ctx, [
      [
        3,
        () => ({
          sql: 'INSERT INTO events (id, happened_at, payload) VALUES ($1, $2::timestamp, $3)',
          params: [
            ctx.fresh(),
            `2025-0${ctx.int(1, 9)}-1${ctx.int(0, 9)} 0${ctx.int(0, 9)}:${ctx.int(10, 59)}:07.${ctx.int(100000, 999999)}`,
            payload(),
          ],
        }),
      ],
      [
        1,
        () => ({
          sql:
            'INSERT INTO events (id, counter, happened_at, payload) ' +
            `SELECT $1::int, 7, now()::timestamp(0), '{"n": 0, "tag": "sel"}'`,
          params: [ctx.fresh()],
        }),
      ],
      [
        3,
        () => ({
          sql: "UPDATE events SET counter = counter + 1, happened_at = happened_at + interval '1 second' WHERE id = $1",
          params: [ctx.existing()],
        }),
      ],
      [
        1,
        () => ({
          sql: 'UPDATE events SET payload = $1 WHERE id = ANY($2::int[])',
          params: [payload(), [ctx.existing(), ctx.existing(), ctx.existing()]],
        }),
      ],
      [1, () => ({ sql: 'DELETE FROM events WHERE id = $1 RETURNING payload', params: [ctx.existing()] })],
    ]);
  },
  reads: [
    { sql: 'SELECT * FROM events ORDER BY id', params: [] },
    {
      sql: "SELECT id, payload::jsonb->>'tag' AS tag FROM events WHERE counter > $1 ORDER BY id",
      params: [3],
    },
    {
      sql: "SELECT date_trunc('hour', happened_at) AS h, count(*) FROM events GROUP BY 1 ORDER BY 1",
      params: [],
    },
    { sql: 'SELECT max(happened_at), min(id) FROM events WHERE payload LIKE $1', params: ['%"t1"%'] },
  ],
  allowedErrors: ['40P01'],
};

/** Composite key (order_id, line_no), including writes that move rows to another key. */
export const compositeKeyCase: MappingCase = {
  name: 'composite-key',
  setup: `
    CREATE TABLE line_items (order_id int, line_no int, sku text NOT NULL, qty int NOT NULL,
      PRIMARY KEY (order_id, line_no));
    INSERT INTO line_items SELECT o, l, 'sku-' || o || '-' || l, l FROM generate_series(1, 20) o, generate_series(1, 6) l;`,
  // Line numbers: 1..6 exist for every order; a fresh line n belongs to order n % 20 + 1.
  seededKeys: 6,
  expand: `CREATE TABLE line_items_v2 (order_id bigint, line_no int, sku text NOT NULL, quantity int NOT NULL,
      PRIMARY KEY (order_id, line_no));`,
  mapping: {
    name: 'line-items',
    old: 'line_items',
    new: 'line_items_v2',
    key: ['order_id', 'line_no'],
    up: { order_id: 'order_id', line_no: 'line_no', sku: 'sku', quantity: 'qty' },
    down: { order_id: 'order_id::int', line_no: 'line_no', sku: 'sku', qty: 'quantity' },
  },
  write: (ctx) => {
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
            sql: 'INSERT INTO line_items (order_id, line_no, sku, qty) VALUES ($1, $2, $3, $4)',
            params: [(l % 20) + 1, l, `sku-${ctx.word()}`, ctx.int(1, 9)],
          };
        },
      ],
      [
        2,
        () => ({
          sql: 'UPDATE line_items SET qty = qty + $1 WHERE order_id = $2 AND line_no = $3',
          params: [ctx.int(1, 3), ...existingLine()],
        }),
      ],
      [
        1,
        () => ({ sql: 'UPDATE line_items SET qty = qty + 1 WHERE order_id = $1', params: [ctx.int(1, 20)] }),
      ],
      [
        1,
        () => ({
          // Moves a row to another key: the new table must follow (delete old key, upsert new).
          sql: 'UPDATE line_items SET line_no = line_no + 100000 WHERE order_id = $1 AND line_no = $2',
          params: existingLine(),
        }),
      ],
      [
        1,
        () => {
          const [, l] = existingLine();
          return {
            sql: 'UPDATE line_items SET order_id = $1 WHERE order_id = $2 AND line_no = $3 RETURNING order_id, line_no',
            params: [ctx.int(21, 40), l <= 6 ? ctx.int(1, 20) : (l % 20) + 1, l],
          };
        },
      ],
      [
        1,
        () => ({
          sql: 'DELETE FROM line_items WHERE order_id = $1 AND line_no = $2',
          params: existingLine(),
        }),
      ],
      [
        1,
        () => ({
          sql: 'DELETE FROM line_items li USING (SELECT $1::int AS o) x WHERE li.order_id = x.o AND li.qty > $2',
          params: [ctx.int(1, 40), ctx.int(5, 12)],
        }),
      ],
    ]);
  },
  reads: [
    { sql: 'SELECT * FROM line_items ORDER BY order_id, line_no', params: [] },
    {
      sql: 'SELECT order_id, sum(qty) AS total, count(*) FROM line_items GROUP BY order_id ORDER BY order_id',
      params: [],
    },
    {
      sql: 'SELECT li.sku FROM line_items AS li WHERE (li.order_id, li.line_no) IN (($1::int, 1), ($2::int, 2)) ORDER BY 1',
      params: [3, 4],
    },
  ],
  // Two writes moving rows onto the same key, and multi-row updates locking in different orders.
  allowedErrors: ['23505', '40P01'],
};

/** Identifiers that need quoting: "Order", "user-name", a reserved word, non-ASCII names. */
export const identifiersCase: MappingCase = {
  name: 'identifiers',
  setup: `
    CREATE TABLE "Order" ("Id" int PRIMARY KEY, "user-name" text NOT NULL, "select" int NOT NULL DEFAULT 0,
      "prénom" text);
    INSERT INTO "Order" SELECT g, 'user-' || g, g % 4, CASE WHEN g % 3 = 0 THEN 'Zoë' ELSE 'Ñandú' || g END
      FROM generate_series(1, 110) g;`,
  seededKeys: 110,
  expand: `CREATE TABLE "Commande_é" ("Id" bigint PRIMARY KEY, "user-name" text NOT NULL, "from" int NOT NULL,
      "prénom" text);`,
  mapping: {
    name: 'order-quoted',
    old: '"Order"',
    new: 'public."Commande_é"',
    key: ['Id'],
    up: { Id: '"Id"', 'user-name': '"user-name"', from: '"select"', prénom: '"prénom"' },
    down: { Id: '"Id"::int', 'user-name': '"user-name"', select: '"from"', prénom: '"prénom"' },
  },
  write: (ctx) =>
    weighted(ctx, [
      [
        3,
        () => ({
          sql: 'INSERT INTO "Order" ("Id", "user-name", "prénom") VALUES ($1, $2, $3)',
          params: [ctx.fresh(), `user-${ctx.word()}`, ctx.word()],
        }),
      ],
      [
        2,
        () => ({
          sql: 'UPDATE "Order" SET "select" = "select" + 1 WHERE "Id" = $1',
          params: [ctx.existing()],
        }),
      ],
      [
        1,
        () => ({
          sql: 'UPDATE "Order" o SET "prénom" = $1 WHERE o."Id" = $2 RETURNING o."user-name", "prénom"',
          params: [ctx.word(), ctx.existing()],
        }),
      ],
      [
        1,
        () => ({
          // Its own WITH clause, and (sent simple) a non-ASCII literal before the table name.
          sql: 'WITH v(n) AS (VALUES ($1::text)) UPDATE "Order" SET "prénom" = v.n FROM v WHERE "Order"."Id" = $2',
          params: [ctx.word(), ctx.existing()],
        }),
      ],
      [1, () => ({ sql: 'DELETE FROM "Order" WHERE "Id" = $1', params: [ctx.existing()] })],
      [
        1,
        () => ({
          sql: 'DELETE FROM public."Order" WHERE "user-name" = $1',
          params: [`user-${ctx.existing()}`],
        }),
      ],
    ]),
  reads: [
    { sql: 'SELECT * FROM "Order" ORDER BY "Id"', params: [] },
    { sql: 'SELECT "user-name", "prénom" FROM "Order" WHERE "select" >= $1 ORDER BY "Id"', params: [2] },
    { sql: 'SELECT o."Id" FROM public."Order" AS o WHERE o."prénom" = $1 ORDER BY 1', params: ['Zoë'] },
  ],
  allowedErrors: ['40P01'],
};

export const ALL_CASES: MappingCase[] = [
  renameCase,
  splitMergeCase,
  typeChangeCase,
  compositeKeyCase,
  identifiersCase,
];
