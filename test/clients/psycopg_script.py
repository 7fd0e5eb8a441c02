"""One fixed psycopg 3 session, printed as canonical JSON lines (one per step).

Run the same script straight on Postgres and through switchyard: a client that
cannot tell the proxy is there prints the same lines. Nothing printed depends on
the run (no pids, no clock, no object OIDs: tables are printed by name).

    python3 psycopg_script.py DSN script     # protocol paths on its own table
    python3 psycopg_script.py DSN workload   # writes on the mapped users table
"""

import json
import sys
import threading
import time

import psycopg
from psycopg import ClientCursor

DSN, MODE = sys.argv[1], sys.argv[2]

DIAG_FIELDS = [
    "severity",
    "severity_nonlocalized",
    "sqlstate",
    "message_primary",
    "message_detail",
    "message_hint",
    "statement_position",
    "internal_position",
    "internal_query",
    "context",
    "schema_name",
    "table_name",
    "column_name",
    "datatype_name",
    "constraint_name",
    "source_file",
    "source_line",
    "source_function",
]

meta = psycopg.connect(DSN, autocommit=True)
_names: dict[int, str] = {}


def table_name(oid: int) -> str | None:
    """A result column's table, by name: OIDs differ between databases."""
    if not oid:
        return None
    if oid not in _names:
        _names[oid] = meta.execute("SELECT %s::oid::regclass::text", [oid]).fetchone()[0]
    return _names[oid]


def emit(step: str, **fields) -> None:
    print(json.dumps({"step": step, **fields}, sort_keys=True, default=str), flush=True)


def error(e: BaseException) -> dict:
    if isinstance(e, psycopg.Error) and e.diag.sqlstate:
        return {"class": type(e).__name__, **{k: getattr(e.diag, k) for k in DIAG_FIELDS}}
    return {"class": type(e).__name__, "text": str(e)}


def result(cur: psycopg.Cursor) -> dict:
    """What a client can see of the last result: columns, rows, tag, count."""
    out: dict = {"status": cur.statusmessage, "rowcount": cur.rowcount}
    if cur.description is not None:
        res = cur.pgresult
        out["columns"] = [
            {
                "name": d.name,
                "type": d.type_code,
                "size": d.internal_size,
                "display": d.display_size,
                "precision": d.precision,
                "scale": d.scale,
                "modifier": res.fmod(i),
                "format": res.fformat(i),
                "table": table_name(res.ftable(i)),
                "attnum": res.ftablecol(i),
            }
            for i, d in enumerate(cur.description)
        ]
        out["rows"] = cur.fetchall()
    return out


def step(name: str, conn: psycopg.Connection, f) -> None:
    """Runs f(conn) and prints its results or its error, then the session state."""
    try:
        got = f(conn)
        fields = {"ok": got}
    except psycopg.Error as e:
        fields = {"error": error(e)}
        if not conn.autocommit and not conn.closed:
            conn.rollback()
    fields["tx"] = conn.info.transaction_status.name if not conn.closed else "closed"
    if not conn.autocommit and fields["tx"] != "IDLE":
        conn.rollback()
    emit(name, **fields)


def run(cur: psycopg.Cursor, query, params=None, **kw) -> dict:
    cur.execute(query, params, **kw)
    return result(cur)


def script(conn: psycopg.Connection) -> None:
    notices: list[dict] = []
    conn.add_notice_handler(
        lambda d: notices.append({"severity": d.severity_nonlocalized, "sqlstate": d.sqlstate, "message": d.message_primary})
    )
    conn.autocommit = True
    # No parameters: psycopg sends the text as a simple Query, several statements at once.
    step(
        "setup (simple protocol, several statements)",
        conn,
        lambda c: run(
            c.cursor(),
            """DROP TABLE IF EXISTS items;
               CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL UNIQUE,
                                   qty int CHECK (qty >= 0), price numeric(10,2), tags text[],
                                   meta jsonb, day date);
               SELECT 'ready' AS state""",
        ),
    )

    def client_side(c):
        cur = ClientCursor(c)
        a = run(cur, "INSERT INTO items (name, qty, price, tags, meta, day) VALUES (%s, %s, %s, %s, %s, %s) RETURNING *",
                ["apple", 3, "1.25", ["red", "fruit"], json.dumps({"k": 1}), "2026-01-02"])
        b = run(cur, "SELECT id, name, qty * 2 AS twice, price, tags, meta, day FROM items WHERE name = %s", ["apple"])
        return [a, b]

    step("simple protocol with client-side binding", conn, client_side)

    def server_side(c):
        cur = c.cursor()
        a = run(cur, "INSERT INTO items (name, qty, price) VALUES (%s, %s, %s), (%s, %s, %s) RETURNING id, name",
                ["pear", 5, "2.50", "plum", 0, None])
        b = run(cur, "SELECT name, qty, price, %s::int AS p FROM items ORDER BY id", [42])
        c2 = run(c.cursor(binary=True), "SELECT id, name, price, tags FROM items WHERE id = %s", [1])
        d = run(cur, "UPDATE items SET qty = qty + %s WHERE qty >= %s", [1, 0])
        e = run(cur, "DELETE FROM items WHERE name = %s", ["nothing"])
        return [a, b, c2, d, e]

    step("extended protocol (server-side binding, text and binary)", conn, server_side)

    def prepared(c):
        cur = c.cursor()
        outs = []
        # prepare_threshold is 5: the 6th execution on runs a named server-side statement.
        for i in range(8):
            outs.append(run(cur, "SELECT name, qty + %s AS q FROM items WHERE id = %s", [i, 1 + i % 3]))
        outs.append(run(cur, "SELECT count(*) FROM items WHERE qty > %s", [1], prepare=True))
        outs.append(run(cur, "SELECT count(*) FROM items WHERE qty > %s", [2], prepare=True))
        outs.append(
            run(cur, "SELECT count(*) AS n FROM pg_prepared_statements WHERE statement LIKE 'SELECT % FROM items WHERE%'")
        )
        return outs

    step("server-side prepared statements", conn, prepared)

    conn.autocommit = False

    def batch(c):
        cur = c.cursor()
        cur.executemany("INSERT INTO items (name, qty) VALUES (%s, %s)", [(f"b{i}", i) for i in range(40)])
        a = {"rowcount": cur.rowcount, "status": cur.statusmessage}
        cur.executemany("INSERT INTO items (name, qty) VALUES (%s, %s) RETURNING id, name",
                        [(f"r{i}", i) for i in range(5)], returning=True)
        returned = []
        while True:
            returned.append(cur.fetchall())
            if not cur.nextset():
                break
        c.commit()
        return [a, returned]

    step("executemany batch (pipelined)", conn, batch)

    def batch_error(c):
        cur = c.cursor()
        cur.executemany("INSERT INTO items (name, qty) VALUES (%s, %s)", [("e1", 1), ("e2", 2), ("apple", 3), ("e4", 4)])
        c.commit()

    step("error mid-batch (duplicate key in the 3rd row)", conn, batch_error)
    step("after the failed batch", conn, lambda c: run(c.cursor(), "SELECT count(*) FROM items WHERE name LIKE 'e_'"))

    def batch_error_late(c):
        cur = c.cursor()
        cur.executemany("INSERT INTO items (name, qty) VALUES (%s, %s)", [("f1", 1), ("f2", -2), ("f3", 3)])
        c.commit()

    step("error mid-batch (check constraint)", conn, batch_error_late)

    def copy_in(c):
        cur = c.cursor()
        with cur.copy("COPY items (name, qty, price, tags) FROM STDIN") as cp:
            for i in range(100):
                cp.write_row((f"c{i}", i, f"{i}.{i % 10}0", ["x", str(i)]))
        a = {"rowcount": cur.rowcount, "status": cur.statusmessage}
        with cur.copy("COPY items (name, qty) FROM STDIN (FORMAT binary)") as cp:
            cp.set_types(["text", "int4"])
            for i in range(10):
                cp.write_row((f"cb{i}", i))
        b = {"rowcount": cur.rowcount, "status": cur.statusmessage}
        c.commit()
        return [a, b]

    step("COPY FROM STDIN (text and binary)", conn, copy_in)

    def copy_out(c):
        cur = c.cursor()
        rows = []
        with cur.copy("COPY (SELECT name, qty, price, tags FROM items WHERE name LIKE 'c%%' ORDER BY id) TO STDOUT") as cp:
            for row in cp.rows():
                rows.append(row)
        a = {"rows": rows, "status": cur.statusmessage, "rowcount": cur.rowcount}
        raw = b""
        with cur.copy("COPY (SELECT id, name FROM items ORDER BY id LIMIT 5) TO STDOUT (FORMAT binary)") as cp:
            for data in cp:
                raw += bytes(data)
        c.commit()
        return [a, raw.hex()]

    step("COPY TO STDOUT (text and binary)", conn, copy_out)

    def copy_error(c):
        cur = c.cursor()
        with cur.copy("COPY items (name, qty) FROM STDIN") as cp:
            cp.write("g1\t1\ng2\tnot-a-number\ng3\t3\n")
        c.commit()

    step("COPY FROM STDIN with a bad row", conn, copy_error)

    def pipeline(c):
        got = []
        with c.pipeline() as p:
            cur = c.cursor()
            cur.execute("INSERT INTO items (name, qty) VALUES (%s, %s) RETURNING id", ["p1", 1])
            cur2 = c.cursor()
            cur2.execute("SELECT name FROM items WHERE name = %s", ["p1"])
            p.sync()
            got.append(result(cur))
            got.append(result(cur2))
        c.commit()
        # Where psycopg raises the error of an aborted pipeline (at an execute, a sync or the
        # block's end) depends on when the reply arrived: print which server errors came, not where.
        server_errors: list[dict] = []

        def seen(e: psycopg.Error) -> None:
            if e.diag.sqlstate and error(e) not in server_errors:
                server_errors.append(error(e))

        try:
            with c.pipeline():
                for q, params in [
                    ("INSERT INTO items (name, qty) VALUES (%s, %s) RETURNING name", ["p2", 2]),
                    ("SELECT 1 / %s AS boom", [0]),
                    ("SELECT %s::int AS after", [3]),
                ]:
                    try:
                        c.execute(q, params)
                    except psycopg.Error as e:
                        seen(e)
        except psycopg.Error as e:
            seen(e)
        got.append({"server_errors": server_errors})
        c.rollback()
        got.append(run(c.cursor(), "SELECT count(*) FROM items WHERE name LIKE 'p_'"))
        c.commit()
        return got

    step("pipeline mode, with an error inside", conn, pipeline)

    def errors(c):
        got = []
        for q, params in [
            ("SELECT 1 / %s", [0]),
            ("SELEC 1", None),
            ("SELECT nope FROM items", None),
            ("INSERT INTO items (name) VALUES (%s)", [None]),
            ("INSERT INTO items (name, qty) VALUES (%s, %s)", ["neg", -1]),
            ("SELECT %s::int", ["x"]),
            ("DO $$ BEGIN RAISE NOTICE 'hello %%', 1; RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'custom', "
             "DETAIL = 'd', HINT = 'h', COLUMN = 'c', CONSTRAINT = 'k', TABLE = 't', SCHEMA = 's'; END $$", None),
        ]:
            try:
                c.execute(q, params)
                got.append({"ok": q})
            except psycopg.Error as e:
                got.append(error(e))
            c.rollback()
        return got

    step("errors and their fields", conn, errors)

    def transaction(c):
        cur = c.cursor()
        cur.execute("INSERT INTO items (name, qty) VALUES ('t1', 1)")
        s1 = c.info.transaction_status.name
        try:
            cur.execute("SELECT 1/0")
        except psycopg.Error:
            pass
        s2 = c.info.transaction_status.name
        c.rollback()
        with c.transaction():
            cur.execute("INSERT INTO items (name, qty) VALUES ('t2', 2)")
            with c.transaction():
                cur.execute("INSERT INTO items (name, qty) VALUES ('t3', 3)")
        c.commit()
        return [s1, s2, run(cur, "SELECT name FROM items WHERE name LIKE 't_' ORDER BY name")]

    step("transactions and savepoints", conn, transaction)

    conn.autocommit = True

    def cancel(c):
        marker = "SELECT pg_sleep(30) /* psycopg cancel */"

        def canceller():
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                r = meta.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = %s AND wait_event = 'PgSleep'", [marker]
                ).fetchone()
                if r[0]:
                    # cancel_safe() from psycopg 3.2; Debian's 3.1 has cancel().
                    getattr(c, "cancel_safe", c.cancel)()
                    return
                time.sleep(0.02)

        t = threading.Thread(target=canceller)
        t.start()
        try:
            c.execute(marker)
            return "not cancelled"
        finally:
            t.join()

    step("cancel a running pg_sleep(30)", conn, cancel)
    step("the session after the cancel", conn, lambda c: run(c.cursor(), "SELECT 'still here' AS s"))
    step("notices seen", conn, lambda c: notices)
    step("final table", conn, lambda c: run(c.cursor(), "SELECT id, name, qty, price, tags FROM items ORDER BY id"))


def workload(conn: psycopg.Connection) -> None:
    """Writes on the mapped table through every psycopg path; the test checks new = up(old) after."""
    conn.autocommit = True
    cur = conn.cursor()
    step("insert (extended)", conn, lambda c: run(cur, "INSERT INTO users (id, email, first_name, last_name) VALUES (%s, %s, %s, %s) RETURNING id, email",
                                                  [900001, "New@Example.com", "Ada", "Lovelace"]))
    step("insert (simple)", conn, lambda c: run(ClientCursor(c), "INSERT INTO users (id, email, first_name, last_name) VALUES (%s, %s, %s, %s)",
                                                [900002, "Two@Example.com", "Alan", "Turing"]))
    for i in range(8):
        step(f"update prepared #{i}", conn, lambda c, i=i: run(cur, "UPDATE users SET version = version + 1, email = %s WHERE id = %s",
                                                              [f"U{i}@Example.com", 1 + i % 4]))
    step("update moving the key", conn, lambda c: run(cur, "UPDATE users SET id = id + 800000 WHERE id = %s RETURNING id, version", [7]))
    step("delete", conn, lambda c: run(cur, "DELETE FROM users WHERE id IN (%s, %s)", [8, 900002]))

    conn.autocommit = False

    def many(c):
        k = c.cursor()
        k.executemany("INSERT INTO users (id, email, first_name, last_name) VALUES (%s, %s, %s, %s)",
                      [(910000 + i, f"M{i}@Example.com", f"f{i}", f"l{i}") for i in range(30)])
        k.executemany("UPDATE users SET last_name = %s WHERE id = %s", [(f"L{i}", 10 + i) for i in range(30)])
        c.commit()
        return k.rowcount

    step("executemany insert and update", conn, many)

    def many_error(c):
        c.cursor().executemany("INSERT INTO users (id, email) VALUES (%s, %s)", [(920001, "a"), (1, "dup"), (920003, "c")])
        c.commit()

    step("error mid-batch on the mapped table", conn, many_error)

    def pipe(c):
        with c.pipeline():
            a = c.execute("UPDATE users SET first_name = %s WHERE id = %s RETURNING id, first_name", ["Pip", 20])
            b = c.execute("DELETE FROM users WHERE id = %s", [21])
            d = c.execute("INSERT INTO users (id, email) VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET email = excluded.email",
                          [22, "Conflict@Example.com"])
        c.commit()
        return [result(a), result(b), result(d)]

    step("pipeline of mirrored writes", conn, pipe)

    def savepoint(c):
        k = c.cursor()
        k.execute("UPDATE users SET version = 100 WHERE id = 30")
        try:
            with c.transaction():
                k.execute("UPDATE users SET version = 200 WHERE id = 31")
                k.execute("SELECT 1/0")
        except psycopg.Error:
            pass
        c.commit()
        got = run(k, "SELECT id, version FROM users WHERE id IN (30, 31) ORDER BY id")
        c.commit()
        return got

    step("savepoint rolled back inside a transaction", conn, savepoint)
    conn.autocommit = True
    step("reads", conn, lambda c: run(cur, "SELECT id, email, first_name, last_name, version FROM users WHERE id > 899999 OR id < 12 ORDER BY id"))


with psycopg.connect(DSN) as conn:
    emit("connected", server_version=conn.info.server_version // 10000, encoding=conn.info.encoding)
    {"script": script, "workload": workload}[MODE](conn)
meta.close()
emit("done")
