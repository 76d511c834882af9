/* Runs one SQL statement (from a file) REPS times the way sqlx does: prepared
 * once, its parameters bound again before every run, each run in a
 * transaction rolled back. Prints how many runs SQLite had to prepare the
 * statement again (a bound LIMIT, a bound value compared with a partial
 * index or a LIKE pattern makes it do so at every binding) and the median
 * time of a run. Build and run with reprepare.sh.
 *   reprepare DB SQL_FILE REPS [VALUE ...]   (VALUE binds ?1, ?2, ...: an
 *   integer when it parses as one, text otherwise) */
#include "sqlite3.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: %s DB SQL_FILE REPS [VALUE ...]\n", argv[0]); return 2; }
    int reps = atoi(argv[3]);
    if (reps < 1) reps = 1;
    FILE *f = fopen(argv[2], "r");
    if (!f) { perror(argv[2]); return 2; }
    static char sql[1 << 20];
    size_t n = fread(sql, 1, sizeof sql - 1, f);
    sql[n] = 0;
    fclose(f);
    sqlite3 *db;
    if (sqlite3_open(argv[1], &db) != SQLITE_OK) { fprintf(stderr, "%s\n", sqlite3_errmsg(db)); return 1; }
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, 0) != SQLITE_OK) { fprintf(stderr, "%s\n", sqlite3_errmsg(db)); return 1; }
    double *times = malloc(sizeof(double) * reps);
    for (int i = 0; i < reps; i++) {
        for (int p = 4; p < argc; p++) {
            char *end;
            long long v = strtoll(argv[p], &end, 10);
            if (*argv[p] && !*end) sqlite3_bind_int64(stmt, p - 3, v);
            else sqlite3_bind_text(stmt, p - 3, argv[p], -1, SQLITE_TRANSIENT);
        }
        sqlite3_exec(db, "BEGIN", 0, 0, 0);
        double t = now_ms();
        int rc;
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {}
        if (rc != SQLITE_DONE) { fprintf(stderr, "%s\n", sqlite3_errmsg(db)); return 1; }
        sqlite3_reset(stmt);
        times[i] = now_ms() - t;
        sqlite3_exec(db, "ROLLBACK", 0, 0, 0);
    }
    qsort(times, reps, sizeof(double), by_value);
    printf("re-prepared %d of %d runs; median %.3f ms, p90 %.3f ms\n",
           sqlite3_stmt_status(stmt, SQLITE_STMTSTATUS_REPREPARE, 0), reps,
           times[reps / 2], times[reps * 9 / 10]);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    free(times);
    return 0;
}
