// The tables of the dual-write and read benchmarks: the mapped pair
// users -> users_v2, a pair kept in sync by a BEFORE trigger (as pgroll
// does), and a pair the application writes both halves of itself.

export const MAPPING = {
  name: 'users-full-name',
  old: 'public.users',
  new: 'public.users_v2',
  key: ['id'],
  dualWrite: true,
  reads: 'old',
  up: {
    id: 'id',
    email: 'lower(email)',
    full_name: "first_name || ' ' || last_name",
  },
  down: {
    id: 'id',
    email: 'email',
    first_name: "split_part(full_name, ' ', 1)",
    last_name: "split_part(full_name, ' ', 2)",
  },
} as const;

export const PREFILL_ROWS = 10_000;

function pair(old: string, neu: string): string {
  return `
CREATE TABLE ${old} (
  id bigserial PRIMARY KEY,
  email text NOT NULL,
  first_name text NOT NULL,
  last_name text NOT NULL
);
CREATE TABLE ${neu} (
  id bigint PRIMARY KEY,
  email text NOT NULL,
  full_name text NOT NULL
);
INSERT INTO ${old} (email, first_name, last_name)
  SELECT 'User' || g || '@Example.com', 'first' || g, 'last' || g FROM generate_series(1, ${PREFILL_ROWS}) g;
INSERT INTO ${neu} (id, email, full_name)
  SELECT id, lower(email), first_name || ' ' || last_name FROM ${old};
`;
}

export const SETUP_SQL = `
${pair('users', 'users_v2')}
${pair('users_trg', 'users_trg_v2')}
${pair('users_app', 'users_app_v2')}
CREATE FUNCTION users_trg_mirror() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO users_trg_v2 (id, email, full_name)
  VALUES (NEW.id, lower(NEW.email), NEW.first_name || ' ' || NEW.last_name)
  ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email, full_name = EXCLUDED.full_name;
  RETURN NEW;
END $$;
CREATE TRIGGER users_trg_mirror BEFORE INSERT OR UPDATE ON users_trg
  FOR EACH ROW EXECUTE FUNCTION users_trg_mirror();
CREATE FUNCTION users_trg_unmirror() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM users_trg_v2 WHERE id = OLD.id;
  RETURN OLD;
END $$;
CREATE TRIGGER users_trg_unmirror AFTER DELETE ON users_trg
  FOR EACH ROW EXECUTE FUNCTION users_trg_unmirror();
`;

const VALUES = "'User' || :n || '@Example.com', 'first' || :n, 'last' || :n";

/** pgbench scripts: one logical single-row write per transaction. */
export const WRITE_SCRIPTS = {
  insert: {
    plain: (t: string) => `\\set n random(1, 1000000000)
INSERT INTO ${t} (email, first_name, last_name) VALUES (${VALUES});
`,
    app: `\\set n random(1, 1000000000)
BEGIN;
INSERT INTO users_app (email, first_name, last_name) VALUES (${VALUES}) RETURNING id \\gset
INSERT INTO users_app_v2 (id, email, full_name) VALUES (:id, lower('User' || :n || '@Example.com'), 'first' || :n || ' ' || 'last' || :n) ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email, full_name = EXCLUDED.full_name;
COMMIT;
`,
  },
  update: {
    plain: (t: string) => `\\set id random(1, ${PREFILL_ROWS})
\\set n random(1, 1000000000)
UPDATE ${t} SET email = 'User' || :n || '@Example.com' WHERE id = :id;
`,
    app: `\\set id random(1, ${PREFILL_ROWS})
\\set n random(1, 1000000000)
BEGIN;
UPDATE users_app SET email = 'User' || :n || '@Example.com' WHERE id = :id;
INSERT INTO users_app_v2 (id, email, full_name) SELECT id, lower(email), first_name || ' ' || last_name FROM users_app WHERE id = :id ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email, full_name = EXCLUDED.full_name;
COMMIT;
`,
  },
} as const;

export const READ_OLD_SQL = 'SELECT id, email, first_name, last_name FROM users WHERE id = :id';
export const READ_HAND_SQL =
  "SELECT id, email, split_part(full_name, ' ', 1) AS first_name, split_part(full_name, ' ', 2) AS last_name FROM users_v2 WHERE id = :id";

export const readScript = (sql: string) => `\\set id random(1, ${PREFILL_ROWS})
${sql};
`;

/**
 * A typical OLTP transaction on the table being migrated: an update, an upsert
 * and a read in one transaction, then a delete, on keys spread over the table
 * (upserts and deletes above the prefilled range keep its size steady).
 */
export const oltpScript = (t: string) => `\\set id random(1, ${PREFILL_ROWS})
\\set k random(${PREFILL_ROWS + 1}, ${PREFILL_ROWS + 100_000})
\\set d random(${PREFILL_ROWS + 1}, ${PREFILL_ROWS + 100_000})
\\set n random(1, 1000000000)
BEGIN;
UPDATE ${t} SET email = 'User' || :n || '@Example.com' WHERE id = :id;
INSERT INTO ${t} (id, email, first_name, last_name) VALUES (:k, ${VALUES}) ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email;
SELECT id, email, first_name, last_name FROM ${t} WHERE id = :k;
COMMIT;
DELETE FROM ${t} WHERE id = :d;
`;
