/* Runs one SQL file against a database with the service's SQLite (built by
 * time_query.sh): its query plan first, then REPS timed runs, each in a
 * transaction rolled back so every run sees the same rows. The statement
 * (one) is prepared once, like the service's cached statements, and its
 * preparation is timed apart. */
#include "sqlite3.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int print_row(void *unused, int n, char **values, char **names) {
    (void)unused; (void)names;
    if (n >= 4) printf("  %s\n", values[3] ? values[3] : "");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s DB SQL_FILE [REPS]\n", argv[0]); return 2; }
    int reps = argc > 3 ? atoi(argv[3]) : 5;
    FILE *f = fopen(argv[2], "r");
    if (!f) { perror(argv[2]); return 2; }
    static char sql[1 << 20], plan[(1 << 20) + 32];
    size_t n = fread(sql, 1, sizeof sql - 1, f);
    sql[n] = 0;
    fclose(f);
    sqlite3 *db;
    char *err = 0;
    if (sqlite3_open(argv[1], &db) != SQLITE_OK) { fprintf(stderr, "%s\n", sqlite3_errmsg(db)); return 1; }
    snprintf(plan, sizeof plan, "EXPLAIN QUERY PLAN %s", sql);
    printf("SQLite %s, plan:\n", sqlite3_libversion());
    if (sqlite3_exec(db, plan, print_row, 0, &err)) { fprintf(stderr, "%s\n", err); return 1; }
    /* Prepared once and reset between runs, as the service's statement
     * cache does: the runs time execution only. */
    sqlite3_stmt *stmt;
    double t0 = now_ms();
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, 0) != SQLITE_OK) {
        fprintf(stderr, "%s\n", sqlite3_errmsg(db));
        return 1;
    }
    printf("prepare: %.3f ms\n", now_ms() - t0);
    for (int i = 0; i < reps; i++) {
        sqlite3_exec(db, "BEGIN", 0, 0, 0);
        double t = now_ms();
        int rc, rows = 0;
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) rows++;
        if (rc != SQLITE_DONE) { fprintf(stderr, "%s\n", sqlite3_errmsg(db)); return 1; }
        sqlite3_reset(stmt);
        printf("run %d: %.3f ms (%d rows)\n", i + 1, now_ms() - t, rows);
        sqlite3_exec(db, "ROLLBACK", 0, 0, 0);
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return 0;
}
