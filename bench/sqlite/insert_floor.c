/* SQLite's own cost of a request-log row, without Rust or sqlx: the
 * request_log table and its `at` index, WAL, synchronous=FULL, incremental
 * auto-vacuum, 2,048 rows per transaction, as the service writes them.
 * Compares bound multi-row INSERTs (what the writer does) with one JSON
 * array read through json_each, and the table without its index.
 * Built and run by bench/sqlite/insert_floor.sh against the SQLite that
 * libsqlite3-sys bundles, with its compile options. */
#include "sqlite3.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 2048
#define ROWS_PER_STATEMENT 100
#define BATCHES 50

static const char *COLUMNS =
    "INSERT INTO request_log (at, method, route, status, duration_ms, bytes_in, bytes_out, "
    "user_id, client_ip, user_agent, request_id, source, loadtest_id) ";
static long seq = 0;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void check(sqlite3 *db, int rc, int want) {
  if (rc != want) {
    fprintf(stderr, "sqlite: %s\n", sqlite3_errmsg(db));
    exit(1);
  }
}

static sqlite3 *open_db(const char *path, int index) {
  sqlite3 *db;
  remove(path);
  check(db, sqlite3_open(path, &db), SQLITE_OK);
  check(db, sqlite3_exec(db,
      "PRAGMA auto_vacuum=INCREMENTAL; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
      "CREATE TABLE request_log (id INTEGER PRIMARY KEY, at TEXT NOT NULL, method TEXT NOT NULL,"
      " route TEXT NOT NULL, status INTEGER NOT NULL, duration_ms REAL NOT NULL, bytes_in INTEGER,"
      " bytes_out INTEGER, user_id TEXT, client_ip TEXT, user_agent TEXT, request_id TEXT,"
      " source TEXT NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'loadtest')), loadtest_id TEXT);",
      0, 0, 0), SQLITE_OK);
  if (index) check(db, sqlite3_exec(db, "CREATE INDEX request_log_at ON request_log (at)", 0, 0, 0), SQLITE_OK);
  return db;
}

static void row_values(char *at, char *request_id) {
  seq++;
  snprintf(at, 32, "2026-11-28T01:%02ld:%02ld.%03ldZ", (seq / 60000) % 60, (seq / 1000) % 60, seq % 1000);
  snprintf(request_id, 40, "01a21f99-57c6-73bf-85f0-%012ld", seq);
}

static const char *USER = "01a21f90-fe26-7327-909b-c43c9977adaf";

static double bound(const char *path, int index) {
  sqlite3 *db = open_db(path, index);
  char *sql = malloc(200000);
  strcpy(sql, COLUMNS);
  strcat(sql, "VALUES ");
  for (int i = 0; i < ROWS_PER_STATEMENT; i++)
    strcat(sql, i ? ", (?,?,?,?,?,?,?,?,?,?,?,?,?)" : "(?,?,?,?,?,?,?,?,?,?,?,?,?)");
  sqlite3_stmt *st;
  check(db, sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, 0), SQLITE_OK);
  char at[32], rid[40];
  double start = now();
  for (int b = 0; b < BATCHES; b++) {
    check(db, sqlite3_exec(db, "BEGIN IMMEDIATE", 0, 0, 0), SQLITE_OK);
    for (int s = 0; s < BATCH / ROWS_PER_STATEMENT; s++) {
      int k = 1;
      for (int i = 0; i < ROWS_PER_STATEMENT; i++) {
        row_values(at, rid);
        sqlite3_bind_text(st, k++, at, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, k++, "GET", -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, k++, "/api/users/{userId}", -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, k++, 200);
        sqlite3_bind_double(st, k++, 0.123);
        sqlite3_bind_null(st, k++);
        sqlite3_bind_int64(st, k++, 230);
        sqlite3_bind_text(st, k++, USER, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, k++, "127.0.0.1", -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, k++, "wrk/4.2", -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, k++, rid, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, k++, "api", -1, SQLITE_TRANSIENT);
        sqlite3_bind_null(st, k++);
      }
      check(db, sqlite3_step(st), SQLITE_DONE);
      sqlite3_reset(st);
    }
    check(db, sqlite3_exec(db, "COMMIT", 0, 0, 0), SQLITE_OK);
  }
  double us = (now() - start) * 1e6 / ((double)BATCHES * (BATCH / ROWS_PER_STATEMENT) * ROWS_PER_STATEMENT);
  sqlite3_finalize(st);
  sqlite3_close(db);
  free(sql);
  return us;
}

static double json_each(const char *path) {
  sqlite3 *db = open_db(path, 1);
  char sql[1024];
  snprintf(sql, sizeof sql, "%sSELECT r.value ->> 0, r.value ->> 1, r.value ->> 2, r.value ->> 3,"
      " r.value ->> 4, r.value ->> 5, r.value ->> 6, r.value ->> 7, r.value ->> 8, r.value ->> 9,"
      " r.value ->> 10, r.value ->> 11, r.value ->> 12 FROM json_each(?1) AS r", COLUMNS);
  sqlite3_stmt *st;
  check(db, sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, 0), SQLITE_OK);
  char *json = malloc(BATCH * 400);
  char at[32], rid[40];
  double spent = 0;
  for (int b = 0; b < BATCHES; b++) {
    char *p = json;
    *p++ = '[';
    for (int i = 0; i < BATCH; i++) {
      row_values(at, rid);
      p += sprintf(p, "%s[\"%s\",\"GET\",\"/api/users/{userId}\",200,0.123,null,230,\"%s\","
                      "\"127.0.0.1\",\"wrk/4.2\",\"%s\",\"api\",null]", i ? "," : "", at, USER, rid);
    }
    *p++ = ']';
    double start = now(); /* the JSON text is the caller's work: not timed */
    check(db, sqlite3_exec(db, "BEGIN IMMEDIATE", 0, 0, 0), SQLITE_OK);
    sqlite3_bind_text(st, 1, json, (int)(p - json), SQLITE_TRANSIENT);
    check(db, sqlite3_step(st), SQLITE_DONE);
    sqlite3_reset(st);
    check(db, sqlite3_exec(db, "COMMIT", 0, 0, 0), SQLITE_OK);
    spent += now() - start;
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  free(json);
  return spent * 1e6 / ((double)BATCHES * BATCH);
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "insert_floor.db";
  printf("SQLite %s, %d rows per transaction, us per row:\n", sqlite3_libversion(), BATCH);
  printf("  bound %d-row INSERTs, with the at index: %.2f\n", ROWS_PER_STATEMENT, bound(path, 1));
  printf("  bound %d-row INSERTs, without the index: %.2f\n", ROWS_PER_STATEMENT, bound(path, 0));
  printf("  one json_each INSERT per transaction:   %.2f\n", json_each(path));
  return 0;
}
