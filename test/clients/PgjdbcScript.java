// One fixed pgjdbc session, printed as canonical JSON lines (one per step).
//
// Run the same program straight on Postgres and through switchyard: a client
// that cannot tell the proxy is there prints the same lines. Nothing printed
// depends on the run (no pids, no clock, no object OIDs).
//
//   java -cp postgresql.jar PgjdbcScript.java JDBC_URL script     protocol paths on its own table
//   java -cp postgresql.jar PgjdbcScript.java JDBC_URL workload   writes on the mapped users table

import java.io.StringReader;
import java.io.StringWriter;
import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.SQLWarning;
import java.sql.Savepoint;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import org.postgresql.PGConnection;
import org.postgresql.PGResultSetMetaData;
import org.postgresql.copy.CopyManager;
import org.postgresql.util.PSQLException;
import org.postgresql.util.ServerErrorMessage;

public class PgjdbcScript {
  interface Body {
    Object run(Connection c) throws Exception;
  }

  static String url;

  public static void main(String[] args) throws Exception {
    url = args[0];
    String mode = args[1];
    if (mode.equals("script")) script();
    else if (mode.equals("workload")) workload();
    else throw new IllegalArgumentException("mode: script | workload");
    emit(obj("step", "done"));
  }

  static Connection connect(String... props) throws SQLException {
    Properties p = new Properties();
    for (int i = 0; i < props.length; i += 2) p.setProperty(props[i], props[i + 1]);
    return DriverManager.getConnection(url, p);
  }

  // ---- canonical JSON ----------------------------------------------------

  static Map<String, Object> obj(Object... kv) {
    Map<String, Object> m = new TreeMap<>();
    for (int i = 0; i < kv.length; i += 2) m.put((String) kv[i], kv[i + 1]);
    return m;
  }

  static void json(StringBuilder b, Object v) {
    if (v == null) b.append("null");
    else if (v instanceof String s) {
      b.append('"');
      for (char ch : s.toCharArray()) {
        switch (ch) {
          case '"' -> b.append("\\\"");
          case '\\' -> b.append("\\\\");
          case '\n' -> b.append("\\n");
          case '\r' -> b.append("\\r");
          case '\t' -> b.append("\\t");
          default -> {
            if (ch < 0x20) b.append(String.format("\\u%04x", (int) ch));
            else b.append(ch);
          }
        }
      }
      b.append('"');
    } else if (v instanceof Number || v instanceof Boolean) b.append(v);
    else if (v instanceof Map<?, ?> m) {
      b.append('{');
      boolean first = true;
      for (Map.Entry<?, ?> e : m.entrySet()) {
        if (!first) b.append(',');
        first = false;
        json(b, e.getKey().toString());
        b.append(':');
        json(b, e.getValue());
      }
      b.append('}');
    } else if (v instanceof List<?> l) {
      b.append('[');
      for (int i = 0; i < l.size(); i++) {
        if (i > 0) b.append(',');
        json(b, l.get(i));
      }
      b.append(']');
    } else if (v instanceof int[] a) {
      List<Object> l = new ArrayList<>();
      for (int x : a) l.add(x);
      json(b, l);
    } else if (v instanceof long[] a) {
      List<Object> l = new ArrayList<>();
      for (long x : a) l.add(x);
      json(b, l);
    } else json(b, v.toString());
  }

  static void emit(Object v) {
    StringBuilder b = new StringBuilder();
    json(b, v);
    System.out.println(b);
    System.out.flush();
  }

  // ---- what a client sees ------------------------------------------------

  static Map<String, Object> error(SQLException e) {
    Map<String, Object> m = obj("class", e.getClass().getSimpleName(), "sqlstate", e.getSQLState(), "message", e.getMessage());
    if (e instanceof PSQLException p && p.getServerErrorMessage() != null) {
      ServerErrorMessage s = p.getServerErrorMessage();
      m.put("severity", s.getSeverity());
      m.put("primary", s.getMessage());
      m.put("detail", s.getDetail());
      m.put("hint", s.getHint());
      m.put("position", s.getPosition());
      m.put("internalPosition", s.getInternalPosition());
      m.put("internalQuery", s.getInternalQuery());
      m.put("where", s.getWhere());
      m.put("schema", s.getSchema());
      m.put("table", s.getTable());
      m.put("column", s.getColumn());
      m.put("datatype", s.getDatatype());
      m.put("constraint", s.getConstraint());
      m.put("file", s.getFile());
      m.put("line", s.getLine());
      m.put("routine", s.getRoutine());
    }
    if (e instanceof BatchUpdateException bu) {
      m.put("updateCounts", bu.getLargeUpdateCounts());
      // The server's error is the next exception; the batch's own message names the statement.
      if (bu.getNextException() != null) m.put("next", error(bu.getNextException()));
    }
    return m;
  }

  static List<Object> warnings(SQLWarning w) {
    List<Object> out = new ArrayList<>();
    for (; w != null; w = w.getNextWarning()) out.add(obj("sqlstate", w.getSQLState(), "message", w.getMessage()));
    return out;
  }

  /** Columns with every metadata accessor an ORM uses, and the rows as text. */
  static Map<String, Object> rows(ResultSet rs) throws SQLException {
    ResultSetMetaData md = rs.getMetaData();
    PGResultSetMetaData pg = md.unwrap(PGResultSetMetaData.class);
    List<Object> cols = new ArrayList<>();
    for (int i = 1; i <= md.getColumnCount(); i++) {
      cols.add(
          obj(
              "name", md.getColumnName(i),
              "label", md.getColumnLabel(i),
              "type", md.getColumnType(i),
              "typeName", md.getColumnTypeName(i),
              "className", md.getColumnClassName(i),
              "table", md.getTableName(i),
              "schema", md.getSchemaName(i),
              "baseTable", pg.getBaseTableName(i),
              "baseColumn", pg.getBaseColumnName(i),
              "baseSchema", pg.getBaseSchemaName(i),
              "autoIncrement", md.isAutoIncrement(i),
              "nullable", md.isNullable(i),
              "precision", md.getPrecision(i),
              "scale", md.getScale(i),
              "displaySize", md.getColumnDisplaySize(i),
              "signed", md.isSigned(i),
              "format", pg.getFormat(i)));
    }
    List<Object> data = new ArrayList<>();
    while (rs.next()) {
      List<Object> row = new ArrayList<>();
      for (int i = 1; i <= md.getColumnCount(); i++) row.add(rs.getString(i));
      data.add(row);
    }
    return obj("columns", cols, "rows", data);
  }

  /** Every result of one execute(): result sets and update counts, in order. */
  static List<Object> results(Statement st, boolean isResultSet) throws SQLException {
    List<Object> out = new ArrayList<>();
    for (;;) {
      if (isResultSet) {
        try (ResultSet rs = st.getResultSet()) {
          out.add(rows(rs));
        }
      } else {
        long n = st.getLargeUpdateCount();
        if (n == -1) break;
        out.add(obj("updateCount", n));
      }
      isResultSet = st.getMoreResults();
    }
    return out;
  }

  static Object exec(Connection c, String sql, Object... params) throws SQLException {
    try (PreparedStatement ps = c.prepareStatement(sql)) {
      for (int i = 0; i < params.length; i++) ps.setObject(i + 1, params[i]);
      List<Object> r = results(ps, ps.execute());
      return obj("results", r, "warnings", warnings(ps.getWarnings()));
    }
  }

  static void step(String name, Connection c, Body body) {
    Map<String, Object> line = obj("step", name);
    try {
      line.put("ok", body.run(c));
    } catch (SQLException e) {
      line.put("error", error(e));
      try {
        if (!c.getAutoCommit()) c.rollback();
      } catch (SQLException ignored) {
        // The error above is what the step reports.
      }
    } catch (Exception e) {
      line.put("error", obj("class", e.getClass().getSimpleName(), "message", e.getMessage()));
    }
    emit(line);
  }

  // ---- the script ----------------------------------------------------------

  static void script() throws Exception {
    try (Connection c = connect()) {
      step("setup (several statements in one execute)", c, x -> {
        try (Statement st = x.createStatement()) {
          boolean rs = st.execute(
              "DROP TABLE IF EXISTS items; "
                  + "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL UNIQUE, qty int CHECK (qty >= 0), "
                  + "price numeric(10,2), tags text[], day date); "
                  + "SELECT 'ready' AS state");
          return obj("results", results(st, rs), "warnings", warnings(st.getWarnings()));
        }
      });
    }
    for (String mode : new String[] {"simple", "extendedForPrepared", "extended"}) {
      try (Connection c = connect("preferQueryMode", mode)) {
        String p = "[" + mode + "] ";
        step(p + "insert with generated keys", c, x -> {
          try (PreparedStatement ps =
              x.prepareStatement("INSERT INTO items (name, qty, price, tags, day) VALUES (?, ?, ?, ?::text[], ?::date)",
                  Statement.RETURN_GENERATED_KEYS)) {
            ps.setString(1, "apple-" + mode);
            ps.setInt(2, 3);
            ps.setBigDecimal(3, new java.math.BigDecimal("1.25"));
            ps.setString(4, "{red,fruit}");
            ps.setString(5, "2026-01-02");
            int n = ps.executeUpdate();
            try (ResultSet keys = ps.getGeneratedKeys()) {
              return obj("updateCount", n, "keys", rows(keys));
            }
          }
        });
        step(p + "select with parameters and metadata", c,
            x -> exec(x, "SELECT id, name, qty * 2 AS twice, price, tags, day, ?::int AS p FROM items WHERE name LIKE ? ORDER BY id", 42, "apple%"));
        step(p + "update and delete counts", c, x -> List.of(
            exec(x, "UPDATE items SET qty = qty + ? WHERE qty >= ?", 1, 0),
            exec(x, "DELETE FROM items WHERE name = ?", "nothing")));
        step(p + "errors and their fields", c, x -> {
          List<Object> out = new ArrayList<>();
          for (String sql : new String[] {
              "SELECT 1 / 0",
              "SELEC 1",
              "SELECT nope FROM items",
              "INSERT INTO items (name) VALUES (NULL)",
              "INSERT INTO items (name, qty) VALUES ('neg', -1)",
              "SELECT 'x'::int",
              "DO $$ BEGIN RAISE NOTICE 'hello %', 1; RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'custom', "
                  + "DETAIL = 'd', HINT = 'h', COLUMN = 'c', CONSTRAINT = 'k', TABLE = 't', SCHEMA = 's'; END $$"}) {
            try {
              out.add(exec(x, sql));
            } catch (SQLException e) {
              out.add(error(e));
            }
          }
          return out;
        });
        step(p + "notice as a warning", c, x -> exec(x, "DO $$ BEGIN RAISE NOTICE 'note %', 7; END $$"));
      }
    }

    // prepareThreshold: from the 3rd execution on pgjdbc uses a named server-side statement (and binary results).
    try (Connection c = connect("prepareThreshold", "3")) {
      step("server-side prepare past prepareThreshold", c, x -> {
        List<Object> out = new ArrayList<>();
        try (PreparedStatement ps = x.prepareStatement("SELECT id, name, qty + ? AS q, price, day FROM items WHERE id = ?")) {
          for (int i = 0; i < 6; i++) {
            ps.setInt(1, i);
            ps.setInt(2, 1 + i % 3);
            try (ResultSet rs = ps.executeQuery()) {
              out.add(rows(rs));
            }
          }
          out.add(exec(x, "SELECT count(*) AS n FROM pg_prepared_statements WHERE statement LIKE 'SELECT id, name, qty + $1%'"));
        }
        return out;
      });
    }

    for (String rewrite : new String[] {"false", "true"}) {
      try (Connection c = connect("reWriteBatchedInserts", rewrite)) {
        String p = "[reWriteBatchedInserts=" + rewrite + "] ";
        c.setAutoCommit(false);
        step(p + "batch insert", c, x -> {
          try (PreparedStatement ps = x.prepareStatement("INSERT INTO items (name, qty) VALUES (?, ?)")) {
            for (int i = 0; i < 40; i++) {
              ps.setString(1, "b" + rewrite + i);
              ps.setInt(2, i);
              ps.addBatch();
            }
            long[] counts = ps.executeLargeBatch();
            x.commit();
            return obj("counts", counts);
          }
        });
        step(p + "batch update", c, x -> {
          try (PreparedStatement ps = x.prepareStatement("UPDATE items SET qty = qty + 1 WHERE name = ?")) {
            for (int i = 0; i < 10; i++) {
              ps.setString(1, "b" + rewrite + (i * 5));
              ps.addBatch();
            }
            ps.setString(1, "missing");
            ps.addBatch();
            long[] counts = ps.executeLargeBatch();
            x.commit();
            return obj("counts", counts);
          }
        });
        step(p + "error mid-batch (duplicate key in the 3rd row)", c, x -> {
          try (PreparedStatement ps = x.prepareStatement("INSERT INTO items (name, qty) VALUES (?, ?)")) {
            for (String n : new String[] {"e1" + rewrite, "e2" + rewrite, "b" + rewrite + "0", "e4" + rewrite}) {
              ps.setString(1, n);
              ps.setInt(2, 1);
              ps.addBatch();
            }
            ps.executeLargeBatch();
            x.commit();
            return "committed";
          }
        });
        step(p + "after the failed batch", c, x -> exec(x, "SELECT count(*) FROM items WHERE name LIKE 'e_" + rewrite + "'"));
        step(p + "statement batch with an error", c, x -> {
          try (Statement st = x.createStatement()) {
            st.addBatch("INSERT INTO items (name, qty) VALUES ('s1" + rewrite + "', 1)");
            st.addBatch("INSERT INTO items (name, qty) VALUES ('s2" + rewrite + "', -2)");
            st.addBatch("INSERT INTO items (name, qty) VALUES ('s3" + rewrite + "', 3)");
            st.executeLargeBatch();
            x.commit();
            return "committed";
          }
        });
        c.rollback();
      }
    }

    try (Connection c = connect()) {
      CopyManager copy = c.unwrap(PGConnection.class).getCopyAPI();
      step("COPY FROM STDIN", c, x -> {
        StringBuilder data = new StringBuilder();
        for (int i = 0; i < 100; i++) data.append("c").append(i).append('\t').append(i).append('\t').append(i).append(".50\n");
        return copy.copyIn("COPY items (name, qty, price) FROM STDIN", new StringReader(data.toString()));
      });
      step("COPY TO STDOUT", c, x -> {
        StringWriter w = new StringWriter();
        long n = copy.copyOut("COPY (SELECT name, qty, price FROM items WHERE name LIKE 'c%' ORDER BY id) TO STDOUT", w);
        return obj("rows", n, "data", w.toString());
      });
      step("COPY FROM STDIN with a bad row", c,
          x -> copy.copyIn("COPY items (name, qty) FROM STDIN", new StringReader("g1\t1\ng2\tnot-a-number\ng3\t3\n")));
      step("the session after COPY", c, x -> exec(x, "SELECT count(*) FROM items WHERE name LIKE 'g_'"));

      c.setAutoCommit(false);
      step("transactions and savepoints", c, x -> {
        exec(x, "INSERT INTO items (name, qty) VALUES ('t1', 1)");
        Savepoint sp = x.setSavepoint("before_t2");
        exec(x, "INSERT INTO items (name, qty) VALUES ('t2', 2)");
        Object failed;
        try {
          exec(x, "SELECT 1/0");
          failed = "no error";
        } catch (SQLException e) {
          failed = error(e);
        }
        x.rollback(sp);
        exec(x, "INSERT INTO items (name, qty) VALUES ('t3', 3)");
        x.commit();
        return List.of(failed, exec(x, "SELECT name FROM items WHERE name LIKE 't_' ORDER BY name"));
      });
      c.rollback();
      c.setAutoCommit(true);

      step("cancel a running pg_sleep(30)", c, x -> {
        String marker = "SELECT pg_sleep(30) /* pgjdbc cancel */";
        try (Statement st = x.createStatement(); Connection watcher = connect()) {
          Thread t = new Thread(() -> {
            long deadline = System.nanoTime() + 30_000_000_000L;
            try (PreparedStatement q = watcher.prepareStatement(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = ? AND wait_event = 'PgSleep'")) {
              q.setString(1, marker);
              while (System.nanoTime() < deadline) {
                try (ResultSet rs = q.executeQuery()) {
                  rs.next();
                  if (rs.getInt(1) > 0) {
                    st.cancel();
                    return;
                  }
                }
                Thread.sleep(20);
              }
            } catch (Exception e) {
              throw new RuntimeException(e);
            }
          });
          t.start();
          try {
            st.execute(marker);
            return "not cancelled";
          } finally {
            t.join();
          }
        }
      });
      step("the session after the cancel", c, x -> exec(x, "SELECT 'still here' AS s"));

      step("database metadata", c, x -> {
        DatabaseMetaData md = x.getMetaData();
        List<Object> out = new ArrayList<>();
        try (ResultSet rs = md.getColumns(null, "public", "items", null)) {
          while (rs.next())
            out.add(obj("column", rs.getString("COLUMN_NAME"), "type", rs.getString("TYPE_NAME"), "size",
                rs.getInt("COLUMN_SIZE"), "nullable", rs.getInt("NULLABLE"), "default", rs.getString("COLUMN_DEF"),
                "autoincrement", rs.getString("IS_AUTOINCREMENT")));
        }
        try (ResultSet rs = md.getPrimaryKeys(null, "public", "items")) {
          while (rs.next()) out.add(obj("pk", rs.getString("COLUMN_NAME"), "name", rs.getString("PK_NAME")));
        }
        return out;
      });
      step("final table", c, x -> exec(x, "SELECT id, name, qty, price, tags, day FROM items ORDER BY id"));
    }
  }

  // ---- writes on the mapped table (the test checks new = up(old) after) ----

  static void workload() throws Exception {
    try (Connection c = connect("prepareThreshold", "2")) {
      step("insert", c, x -> exec(x, "INSERT INTO users (id, email, first_name, last_name) VALUES (?, ?, ?, ?) RETURNING id, email",
          900001, "New@Example.com", "Grace", "Hopper"));
      step("updates past prepareThreshold", c, x -> {
        List<Object> out = new ArrayList<>();
        try (PreparedStatement ps = x.prepareStatement("UPDATE users SET version = version + 1, email = ? WHERE id = ?")) {
          for (int i = 0; i < 6; i++) {
            ps.setString(1, "J" + i + "@Example.com");
            ps.setInt(2, 1 + i % 4);
            out.add(ps.executeUpdate());
          }
        }
        return out;
      });
      step("update moving the key", c, x -> exec(x, "UPDATE users SET id = id + 800000 WHERE id = ? RETURNING id, version", 7));
      step("delete", c, x -> exec(x, "DELETE FROM users WHERE id IN (?, ?)", 8, 900001));
      step("upsert", c, x -> exec(x, "INSERT INTO users (id, email) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET email = excluded.email", 22, "Conflict@Example.com"));
    }
    try (Connection c = connect()) {
      // In a transaction with a fetch size pgjdbc reads through a portal, a few rows per Execute.
      c.setAutoCommit(false);
      step("insert RETURNING read 2 rows at a time", c, x -> {
        try (PreparedStatement ps = x.prepareStatement(
            "INSERT INTO users (id, email) SELECT g, 'F' || g || '@Example.com' FROM generate_series(?::int, ?::int) g RETURNING id, email")) {
          ps.setFetchSize(2);
          ps.setInt(1, 950000);
          ps.setInt(2, 950004);
          try (ResultSet rs = ps.executeQuery()) {
            Map<String, Object> r = rows(rs);
            x.commit();
            return r;
          }
        }
      });
      step("update with a row limit (executeUpdate)", c, x -> {
        try (PreparedStatement ps = x.prepareStatement("UPDATE users SET version = version + 5 WHERE id BETWEEN ? AND ?")) {
          ps.setInt(1, 60);
          ps.setInt(2, 69);
          int n = ps.executeUpdate();
          x.commit();
          return n;
        }
      });
      c.rollback();
    }
    for (String rewrite : new String[] {"false", "true"}) {
      try (Connection c = connect("reWriteBatchedInserts", rewrite)) {
        String p = "[reWriteBatchedInserts=" + rewrite + "] ";
        int base = rewrite.equals("true") ? 930000 : 910000;
        c.setAutoCommit(false);
        step(p + "batch insert and update", c, x -> {
          long[] ins;
          long[] upd;
          try (PreparedStatement ps = x.prepareStatement("INSERT INTO users (id, email, first_name, last_name) VALUES (?, ?, ?, ?)")) {
            for (int i = 0; i < 30; i++) {
              ps.setInt(1, base + i);
              ps.setString(2, "B" + i + "@Example.com");
              ps.setString(3, "f" + i);
              ps.setString(4, "l" + i);
              ps.addBatch();
            }
            ins = ps.executeLargeBatch();
          }
          try (PreparedStatement ps = x.prepareStatement("UPDATE users SET last_name = ? WHERE id = ?")) {
            for (int i = 0; i < 30; i++) {
              ps.setString(1, "L" + rewrite + i);
              ps.setInt(2, 40 + i);
              ps.addBatch();
            }
            upd = ps.executeLargeBatch();
          }
          x.commit();
          return obj("insert", ins, "update", upd);
        });
        step(p + "error mid-batch on the mapped table", c, x -> {
          try (PreparedStatement ps = x.prepareStatement("INSERT INTO users (id, email) VALUES (?, ?)")) {
            for (int id : new int[] {base + 100, 1, base + 101}) {
              ps.setInt(1, id);
              ps.setString(2, "dup");
              ps.addBatch();
            }
            ps.executeLargeBatch();
            x.commit();
            return "committed";
          }
        });
        step(p + "savepoint rolled back", c, x -> {
          exec(x, "UPDATE users SET version = 100 WHERE id = ?", rewrite.equals("true") ? 30 : 32);
          Savepoint sp = x.setSavepoint();
          exec(x, "UPDATE users SET version = 200 WHERE id = ?", 31);
          x.rollback(sp);
          x.commit();
          return exec(x, "SELECT id, version FROM users WHERE id IN (30, 31, 32) ORDER BY id");
        });
        c.rollback();
      }
    }
    try (Connection c = connect("preferQueryMode", "simple")) {
      step("[simple] insert and delete", c, x -> List.of(
          exec(x, "INSERT INTO users (id, email, first_name) VALUES (?, ?, ?)", 940000, "S@Example.com", "Simple"),
          exec(x, "DELETE FROM users WHERE id = ?", 50)));
      step("reads", c, x -> exec(x, "SELECT id, email, first_name, last_name, version FROM users WHERE id > 899999 OR id < 12 ORDER BY id"));
    }
  }
}
