/* SQLite's own cost of a request-log row, without Rust or sqlx: the
 * request_log table as the service writes it (WAL, synchronous=FULL,
 * incremental auto-vacuum, 2,048 rows per transaction in bound 100-row
 * INSERTs), and the variants it was chosen from:
 *   - the service's layout: 16 KiB pages, `at_ms` INTEGER with its index,
 *     values bound in place (SQLITE_STATIC), as monitoring::db binds them;
 *   - the same with every text copied by SQLite (SQLITE_TRANSIENT), as a
 *     value bound through sqlx is;
 *   - the earlier layout: 4 KiB pages, `at` as RFC 3339 TEXT with its index,
 *     values copied;
 *   - the service's layout without the time index;
 *   - one INSERT per transaction reading a JSON array through json_each.
 * Built and run by bench/sqlite/insert_floor.sh against the SQLite that
 * libsqlite3-sys bundles, with its compile options. */
#include "sqlite3.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 2048
#define ROWS_PER_STATEMENT 100
#define BATCHES 100

struct layout {
  int page_size;
  int text_time; /* `at` TEXT instead of `at_ms` INTEGER */
  int index;     /* the time index */
  int copy;      /* SQLITE_TRANSIENT instead of SQLITE_STATIC */
};

static const char *USER = "01a21f90-fe26-7327-909b-c43c9977adaf";
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

static sqlite3 *open_db(const char *path, struct layout l) {
  sqlite3 *db;
  char sql[1024], wal[1024];
  remove(path);
  snprintf(wal, sizeof wal, "%s-wal", path);
  remove(wal);
  check(db, sqlite3_open(path, &db), SQLITE_OK);
  snprintf(sql, sizeof sql,
      "PRAGMA page_size=%d; PRAGMA auto_vacuum=INCREMENTAL; PRAGMA journal_mode=WAL;"
      " PRAGMA synchronous=FULL; PRAGMA cache_size=-1500;"
      "CREATE TABLE request_log (id INTEGER PRIMARY KEY, %s NOT NULL, method TEXT NOT NULL,"
      " route TEXT NOT NULL, status INTEGER NOT NULL, duration_ms REAL NOT NULL, bytes_in INTEGER,"
      " bytes_out INTEGER, user_id TEXT, client_ip TEXT, user_agent TEXT, request_id TEXT,"
      " source TEXT NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'loadtest')), loadtest_id TEXT);",
      l.page_size, l.text_time ? "at TEXT" : "at_ms INTEGER");
  check(db, sqlite3_exec(db, sql, 0, 0, 0), SQLITE_OK);
  if (l.index)
    check(db, sqlite3_exec(db, l.text_time ? "CREATE INDEX t ON request_log (at)"
                                           : "CREATE INDEX t ON request_log (at_ms)", 0, 0, 0),
          SQLITE_OK);
  return db;
}

static const char *insert_sql(struct layout l) {
  static char sql[8192];
  snprintf(sql, sizeof sql, "INSERT INTO request_log (%s, method, route, status, duration_ms,"
      " bytes_in, bytes_out, user_id, client_ip, user_agent, request_id, source, loadtest_id) ",
      l.text_time ? "at" : "at_ms");
  return sql;
}

static double bound(const char *path, struct layout l) {
  sqlite3 *db = open_db(path, l);
  char *sql = malloc(200000);
  strcpy(sql, insert_sql(l));
  strcat(sql, "VALUES ");
  for (int i = 0; i < ROWS_PER_STATEMENT; i++)
    strcat(sql, i ? ", (?,?,?,?,?,?,?,?,?,?,?,?,?)" : "(?,?,?,?,?,?,?,?,?,?,?,?,?)");
  sqlite3_stmt *st;
  check(db, sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, 0), SQLITE_OK);
  sqlite3_destructor_type how = l.copy ? SQLITE_TRANSIENT : SQLITE_STATIC;
  static char at[ROWS_PER_STATEMENT][32], rid[ROWS_PER_STATEMENT][40];
  double start = now();
  for (int b = 0; b < BATCHES; b++) {
    check(db, sqlite3_exec(db, "BEGIN IMMEDIATE", 0, 0, 0), SQLITE_OK);
    for (int s = 0; s < BATCH / ROWS_PER_STATEMENT; s++) {
      int k = 1;
      for (int i = 0; i < ROWS_PER_STATEMENT; i++) {
        seq++;
        snprintf(rid[i], 40, "01a21f99-57c6-73bf-85f0-%012ld", seq);
        if (l.text_time) {
          snprintf(at[i], 32, "2026-11-28T01:%02ld:%02ld.%03ldZ", (seq / 60000) % 60,
                   (seq / 1000) % 60, seq % 1000);
          sqlite3_bind_text(st, k++, at[i], -1, how);
        } else {
          sqlite3_bind_int64(st, k++, 1795827600000 + seq / 10);
        }
        sqlite3_bind_text(st, k++, "GET", 3, how);
        sqlite3_bind_text(st, k++, "/api/users/{userId}", -1, how);
        sqlite3_bind_int64(st, k++, 200);
        sqlite3_bind_double(st, k++, 0.123);
        sqlite3_bind_null(st, k++);
        sqlite3_bind_int64(st, k++, 230);
        sqlite3_bind_text(st, k++, USER, -1, how);
        sqlite3_bind_text(st, k++, "127.0.0.1", -1, how);
        sqlite3_bind_text(st, k++, "wrk/4.2", -1, how);
        sqlite3_bind_text(st, k++, rid[i], -1, how);
        sqlite3_bind_text(st, k++, "api", 3, how);
        sqlite3_bind_null(st, k++);
      }
      check(db, sqlite3_step(st), SQLITE_DONE);
      sqlite3_reset(st);
    }
    check(db, sqlite3_exec(db, "COMMIT", 0, 0, 0), SQLITE_OK);
  }
  double us = (now() - start) * 1e6 / ((double)BATCHES * BATCH);
  sqlite3_finalize(st);
  sqlite3_close(db);
  free(sql);
  return us;
}

static double json_each(const char *path, struct layout l) {
  sqlite3 *db = open_db(path, l);
  char sql[1024];
  snprintf(sql, sizeof sql, "%sSELECT r.value ->> 0, r.value ->> 1, r.value ->> 2, r.value ->> 3,"
      " r.value ->> 4, r.value ->> 5, r.value ->> 6, r.value ->> 7, r.value ->> 8, r.value ->> 9,"
      " r.value ->> 10, r.value ->> 11, r.value ->> 12 FROM json_each(?1) AS r", insert_sql(l));
  sqlite3_stmt *st;
  check(db, sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, 0), SQLITE_OK);
  char *json = malloc(BATCH * 400);
  double spent = 0;
  for (int b = 0; b < BATCHES; b++) {
    char *p = json;
    *p++ = '[';
    for (int i = 0; i < BATCH; i++) {
      seq++;
      p += sprintf(p, "%s[%ld,\"GET\",\"/api/users/{userId}\",200,0.123,null,230,\"%s\","
                      "\"127.0.0.1\",\"wrk/4.2\",\"01a21f99-57c6-73bf-85f0-%012ld\",\"api\",null]",
                   i ? "," : "", 1795827600000 + seq / 10, USER, seq);
    }
    *p++ = ']';
    double start = now(); /* the JSON text is the caller's work: not timed */
    check(db, sqlite3_exec(db, "BEGIN IMMEDIATE", 0, 0, 0), SQLITE_OK);
    sqlite3_bind_text(st, 1, json, (int)(p - json), SQLITE_STATIC);
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
  /* As the service runs it (db::tune_sqlite). */
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  struct layout service = {16384, 0, 1, 0};
  struct layout copied = {16384, 0, 1, 1};
  struct layout earlier = {4096, 1, 1, 1};
  struct layout no_index = {16384, 0, 0, 0};
  struct layout small_pages = {4096, 0, 1, 0};
  struct layout mid_pages = {8192, 0, 1, 0};
  printf("SQLite %s, %d rows per transaction, us per row (best of 3):\n", sqlite3_libversion(), BATCH);
  struct { const char *name; struct layout l; int json; } runs[] = {
    {"service: 16 KiB pages, at_ms INTEGER + index, values bound in place", service, 0},
    {"the same, every text copied (as sqlx binds)                        ", copied, 0},
    {"earlier: 4 KiB pages, at TEXT + index, texts copied                ", earlier, 0},
    {"service layout with 8 KiB pages                                    ", mid_pages, 0},
    {"service layout with 4 KiB pages                                    ", small_pages, 0},
    {"service layout without the time index                              ", no_index, 0},
    {"service layout, one json_each INSERT per transaction               ", service, 1},
  };
  for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
    double best = 1e9;
    for (int t = 0; t < 3; t++) {
      double us = runs[r].json ? json_each(path, runs[r].l) : bound(path, runs[r].l);
      if (us < best) best = us;
    }
    printf("  %s %.2f\n", runs[r].name, best);
  }
  return 0;
}
