"""Waiting for the migration lock, directly connected: a replica that finds the lock taken
waits on the connection it has, learns that the holder finished within moments, and looks
again before locking, so that a replica started while another migrates ends with nothing to
do and never takes the lock. The wait holds no snapshot: a CREATE INDEX CONCURRENTLY in the
holder's migration (which waits for every older snapshot of the database) is not blocked by the
replicas waiting for it."""
import psycopg2

from conftest import clean_env, start, wait_for_event, wait_until

GATE = 4243  # an advisory key the test holds, so that the holder's migration waits for the test


def write(d, files):
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def gate(pg, db):
    """A session of the test holding the gate: the holder's first migration waits for it."""
    conn = psycopg2.connect(pg.url(db))
    conn.autocommit = False
    conn.cursor().execute("SELECT pg_advisory_xact_lock(%s)", (GATE,))
    return conn


def someone_waits_at_the_gate(pg, db):
    return pg.psql(db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                       f"AND objid = {GATE}") == "1"


def test_a_replica_started_while_another_migrates_skips_the_lock(pg, db, tmp_path):
    d = write(tmp_path / "m", {"1_gate.sql": f"SELECT pg_advisory_xact_lock({GATE});\n",
                               "2_t.sql": "CREATE TABLE t (x int);\n"})
    env = clean_env(DATABASE_URL=pg.url(db))
    args = ["--sql-dir", str(d), "--migrate-only", "--migration-lock-timeout", "2m"]
    held = gate(pg, db)
    holder = start(args, env=env)
    wait_for_event(holder, "plan.ready")
    wait_until("the holder waits at the gate", lambda: someone_waits_at_the_gate(pg, db))
    waiter = start(args, env=env)
    wait_for_event(waiter, "lock.wait")
    held.commit()  # the holder goes on and finishes
    held.close()
    assert holder.finish().code == 0
    r = waiter.finish()
    assert r.code == 0, r
    assert r.named("migrate.skip") and not r.named("lock.acquired"), r
    assert r.named("plan.ready")[-1]["pending"] == 0
    assert pg.psql(db, "SELECT count(*) FROM public.mtr_schema_history") == "2"


def test_waiting_replicas_do_not_block_a_concurrent_index_of_the_holder(pg, db, tmp_path):
    d = write(tmp_path / "m", {
        "1_t.sql": f"CREATE TABLE t (x int);\nINSERT INTO t SELECT generate_series(1, 1000);\n"
                   f"SELECT pg_advisory_xact_lock({GATE});\n",
        "2_index.sql": "-- migrate-then-run: no-transaction\nCREATE INDEX CONCURRENTLY t_x ON t (x);\n"})
    env = clean_env(DATABASE_URL=pg.url(db))
    args = ["--sql-dir", str(d), "--migrate-only", "--lock-timeout", "2m", "--migration-lock-timeout", "2m"]
    held = gate(pg, db)
    holder = start(args, env=env)
    wait_for_event(holder, "plan.ready")
    wait_until("the holder waits at the gate", lambda: someone_waits_at_the_gate(pg, db))
    waiters = [start(args, env=env) for _ in range(3)]
    for w in waiters:
        wait_for_event(w, "lock.wait")
    held.commit()
    held.close()
    # Were the waiters holding snapshots, the index would wait for them and they for the lock
    # until --lock-timeout: the finish deadline (30 s) fails long before.
    assert holder.finish(timeout=30).code == 0
    for w in waiters:
        r = w.finish(timeout=30)
        assert r.code == 0 and r.named("migrate.skip"), r
    assert pg.psql(db, "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_x'::regclass") == "t"
