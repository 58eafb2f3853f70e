/* A minimal test harness for the native tests: CHECK macros that count failures, fixture
 * loading from $BONSAI_FIXTURES, and a skip exit (77) when the fixtures are absent. */
#ifndef BN_TEST_HARNESS_H
#define BN_TEST_HARNESS_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One xorshift32 step of *state: uniform in [-1, 1). Each test keeps its own state, so its data
 * does not depend on which other checks ran before. */
static inline float bn_test_rand_unit(uint32_t *state) {
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    return (float)(*state >> 8) / 8388608.0f - 1.0f;
}

static int bn_test_failures = 0;
static int bn_test_checks = 0;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        bn_test_checks++;                                                  \
        if (!(cond)) {                                                     \
            bn_test_failures++;                                            \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
        }                                                                  \
    } while (0)

/* Ends the test: prints a summary, exit status 1 if anything failed. */
static inline int bn_test_done(const char *name) {
    printf("%s: %d checks, %d failed\n", name, bn_test_checks, bn_test_failures);
    return bn_test_failures ? 1 : 0;
}

/* Path of a fixture file: $BONSAI_FIXTURES/rel. Exits 77 (skip) if the folder is absent. */
static inline const char *bn_fixture(const char *rel) {
    static char buf[4096];
    const char *root = getenv("BONSAI_FIXTURES");
    if (!root || !*root) root = "../shared/fixtures";
    snprintf(buf, sizeof buf, "%s/%s", root, rel);
    FILE *f = fopen(buf, "rb");
    if (!f) {
        fprintf(stderr, "SKIP: fixture %s not found (set BONSAI_FIXTURES)\n", buf);
        exit(77);
    }
    fclose(f);
    return buf;
}

/* Reads a whole fixture file into malloc'd memory; *size gets its length. */
static inline void *bn_read_fixture(const char *rel, size_t *size) {
    const char *path = bn_fixture(rel);
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(n > 0 ? (size_t)n : 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) { perror(path); exit(2); }
    fclose(f);
    if (size) *size = (size_t)n;
    return buf;
}

#endif
