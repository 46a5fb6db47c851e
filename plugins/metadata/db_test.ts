/** Tests for the SQLite layer: durability settings, migrations, transactions. */
import assert from "node:assert/strict";
import { SchemaError, SqliteDb } from "./db.ts";
import { type Migration, MIGRATIONS } from "./migrations.ts";

async function tempDb(): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "cts-db-" });
  return { path: `${dir}/meta.db`, cleanup: () => Deno.remove(dir, { recursive: true }) };
}

Deno.test("a database file is opened with WAL, synchronous=FULL and foreign keys", async () => {
  const { path, cleanup } = await tempDb();
  const db = SqliteDb.open(path);
  try {
    assert.equal(db.pragma("journal_mode"), "wal");
    assert.equal(db.pragma("synchronous"), 2); // FULL
    assert.equal(db.pragma("foreign_keys"), 1);
  } finally {
    db.close();
    await cleanup();
  }
});

Deno.test("migrations run once and are idempotent across reopen", async () => {
  const { path, cleanup } = await tempDb();
  try {
    const first = SqliteDb.open(path);
    assert.deepEqual(first.migrate(MIGRATIONS), { from: 0, to: MIGRATIONS.length });
    first.update((tx) => tx.run("INSERT INTO namespaces(name, created_at) VALUES ('default', 1)"));
    assert.deepEqual(first.migrate(MIGRATIONS), { from: MIGRATIONS.length, to: MIGRATIONS.length });
    first.close();
    const again = SqliteDb.open(path);
    assert.deepEqual(again.migrate(MIGRATIONS), { from: MIGRATIONS.length, to: MIGRATIONS.length });
    const rows = again.view((tx) => tx.all<{ name: string }>("SELECT name FROM namespaces"));
    assert.deepEqual(rows.map((r) => r.name), ["default"]);
    again.close();
  } finally {
    await cleanup();
  }
});

Deno.test("a later migration applies on top of an older database", () => {
  const db = SqliteDb.open(":memory:");
  try {
    db.migrate(MIGRATIONS);
    const next: Migration = {
      version: MIGRATIONS.length + 1,
      description: "test column",
      up: (tx) => tx.run("ALTER TABLE namespaces ADD COLUMN note TEXT NOT NULL DEFAULT ''"),
    };
    assert.deepEqual(db.migrate([...MIGRATIONS, next]), {
      from: MIGRATIONS.length,
      to: MIGRATIONS.length + 1,
    });
    db.update((tx) =>
      tx.run("INSERT INTO namespaces(name, created_at, note) VALUES ('x', 1, 'n')")
    );
  } finally {
    db.close();
  }
});

Deno.test("a failing migration leaves the previous version intact", () => {
  const db = SqliteDb.open(":memory:");
  try {
    db.migrate(MIGRATIONS);
    const broken: Migration = {
      version: MIGRATIONS.length + 1,
      description: "broken",
      up: (tx) => {
        tx.run("CREATE TABLE half_done (x INTEGER)");
        tx.run("THIS IS NOT SQL");
      },
    };
    assert.throws(() => db.migrate([...MIGRATIONS, broken]), SchemaError);
    const tables = db.view((tx) =>
      tx.all<{ name: string }>("SELECT name FROM sqlite_master WHERE name = 'half_done'")
    );
    assert.deepEqual(tables, []);
    assert.deepEqual(db.migrate(MIGRATIONS), { from: MIGRATIONS.length, to: MIGRATIONS.length });
  } finally {
    db.close();
  }
});

Deno.test("a database newer than the daemon is refused", () => {
  const db = SqliteDb.open(":memory:");
  try {
    db.migrate(MIGRATIONS);
    db.update((tx) => tx.run("UPDATE schema_version SET version = 99"));
    assert.throws(() => db.migrate(MIGRATIONS), /schema version 99 is newer/);
  } finally {
    db.close();
  }
});

Deno.test("migration lists must be numbered 1, 2, 3 …", () => {
  const db = SqliteDb.open(":memory:");
  try {
    assert.throws(
      () => db.migrate([{ version: 2, description: "gap", up: () => {} }]),
      /expected 1/,
    );
  } finally {
    db.close();
  }
});

Deno.test("a transaction that throws is rolled back and the error rethrown", () => {
  const commits: number[] = [];
  const db = SqliteDb.open(":memory:", { onCommit: (r) => commits.push(r.deletions) });
  try {
    db.migrate(MIGRATIONS);
    commits.length = 0;
    assert.throws(
      () =>
        db.update((tx) => {
          tx.run("INSERT INTO namespaces(name, created_at) VALUES ('a', 1)");
          tx.dirty();
          throw new Error("boom");
        }),
      /boom/,
    );
    assert.equal(db.view((tx) => tx.all("SELECT * FROM namespaces")).length, 0);
    assert.deepEqual(commits, [], "no commit hook after a rollback");
    db.update((tx) => {
      tx.run("INSERT INTO namespaces(name, created_at) VALUES ('b', 1)");
      tx.dirty("content");
    });
    assert.deepEqual(commits, [1]);
  } finally {
    db.close();
  }
});

Deno.test("nested transactions join the outer one and roll back with it", () => {
  const db = SqliteDb.open(":memory:");
  try {
    db.migrate(MIGRATIONS);
    assert.throws(() =>
      db.update((tx) => {
        tx.run("INSERT INTO namespaces(name, created_at) VALUES ('a', 1)");
        db.update((inner) => inner.run("INSERT INTO namespaces(name, created_at) VALUES ('b', 1)"));
        throw new Error("outer fails");
      })
    );
    assert.equal(db.view((tx) => tx.all("SELECT * FROM namespaces")).length, 0);
  } finally {
    db.close();
  }
});

Deno.test("an async transaction function is refused and rolled back", () => {
  const db = SqliteDb.open(":memory:");
  try {
    db.migrate(MIGRATIONS);
    assert.throws(
      () =>
        db.update(async (tx) => {
          tx.run("INSERT INTO namespaces(name, created_at) VALUES ('a', 1)");
          await Promise.resolve();
        }),
      /must be synchronous/,
    );
    assert.equal(db.view((tx) => tx.all("SELECT * FROM namespaces")).length, 0);
    assert.equal(db.inTransaction, false);
  } finally {
    db.close();
  }
});

Deno.test("foreign keys cascade labels and objects with their namespace", () => {
  const db = SqliteDb.open(":memory:");
  try {
    db.migrate(MIGRATIONS);
    db.update((tx) => {
      tx.run("INSERT INTO namespaces(name, created_at) VALUES ('a', 1)");
      tx.run("INSERT INTO namespace_labels(namespace, key, value) VALUES ('a', 'k', 'v')");
      tx.run("INSERT INTO leases(namespace, id, created_at) VALUES ('a', 'l', 1)");
      tx.run(
        "INSERT INTO lease_resources(namespace, lease, type, id) VALUES ('a', 'l', 'ingests', 'r')",
      );
    });
    db.update((tx) => tx.run("DELETE FROM namespaces WHERE name = 'a'"));
    for (const table of ["namespace_labels", "leases", "lease_resources"]) {
      assert.equal(db.view((tx) => tx.all(`SELECT * FROM ${table}`)).length, 0, table);
    }
  } finally {
    db.close();
  }
});

Deno.test("readOne reads one row outside a transaction and sees what a transaction sees", () => {
  const db = SqliteDb.open(":memory:");
  try {
    db.migrate(MIGRATIONS);
    const sql = "SELECT name FROM namespaces WHERE name = ?";
    assert.equal(db.readOne(sql, "x"), undefined);
    db.update((tx) => tx.run("INSERT INTO namespaces(name, created_at) VALUES ('x', 1)"));
    assert.deepEqual({ ...db.readOne<{ name: string }>(sql, "x") }, { name: "x" });
    // Inside a write transaction it sees the transaction's own uncommitted rows.
    db.update((tx) => {
      tx.run("INSERT INTO namespaces(name, created_at) VALUES ('y', 1)");
      assert.deepEqual({ ...db.readOne<{ name: string }>(sql, "y") }, { name: "y" });
    });
    db.close();
    assert.throws(() => db.readOne(sql, "x"), /closed/);
  } finally {
    db.close();
  }
});

Deno.test("readValues reads every row of one statement as arrays, closed or not", () => {
  const db = SqliteDb.open(":memory:");
  try {
    db.migrate(MIGRATIONS);
    const sql = "SELECT name, created_at FROM namespaces ORDER BY name";
    assert.deepEqual(db.readValues(sql), []);
    db.update((tx) => tx.run("INSERT INTO namespaces(name, created_at) VALUES ('b', 2), ('a', 1)"));
    assert.deepEqual(db.readValues(sql).map((r) => [...r]), [["a", 1], ["b", 2]]);
    // Inside a write transaction it sees the transaction's own uncommitted rows.
    db.update((tx) => {
      tx.run("INSERT INTO namespaces(name, created_at) VALUES ('c', 3)");
      assert.equal(db.readValues(sql).length, 3);
    });
    db.close();
    assert.throws(() => db.readValues(sql), /closed/);
  } finally {
    db.close();
  }
});

Deno.test("Tx.values returns rows as arrays in SELECT order", () => {
  const db = SqliteDb.open(":memory:");
  try {
    db.migrate(MIGRATIONS);
    db.update((tx) => {
      tx.run("INSERT INTO namespaces(name, created_at) VALUES ('b', 2), ('a', 1)");
      assert.deepEqual(
        tx.values("SELECT created_at, name FROM namespaces ORDER BY name").map((r) => [...r]),
        [[1, "a"], [2, "b"]],
      );
      // The same SQL through all() still gives objects.
      assert.deepEqual(
        tx.all("SELECT created_at, name FROM namespaces ORDER BY name").map((r) => ({ ...r })),
        [{ created_at: 1, name: "a" }, { created_at: 2, name: "b" }],
      );
    });
  } finally {
    db.close();
  }
});

Deno.test("writeGeneration moves with every write transaction, failed ones too, and not with reads", async () => {
  const { path, cleanup } = await tempDb();
  const db = SqliteDb.open(path);
  try {
    db.migrate(MIGRATIONS);
    const start = db.writeGeneration;
    db.view((tx) => tx.get("SELECT count(*) AS n FROM namespaces"));
    db.readOne("SELECT 1 AS one");
    assert.equal(db.writeGeneration, start);
    db.update((tx) => tx.run("INSERT INTO namespaces(name, created_at) VALUES ('g', 1)"));
    assert.equal(db.writeGeneration, start + 1);
    // Nested updates are one transaction.
    db.update(() => db.update(() => {}));
    assert.equal(db.writeGeneration, start + 2);
    assert.throws(() =>
      db.update((tx) => {
        tx.run("DELETE FROM namespaces WHERE name = 'g'");
        throw new Error("changed my mind");
      })
    );
    assert.equal(db.writeGeneration, start + 3);
    assert.ok(db.readOne("SELECT 1 AS one FROM namespaces WHERE name = 'g'"));
  } finally {
    db.close();
    await cleanup();
  }
});
