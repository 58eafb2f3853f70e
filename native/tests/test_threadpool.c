/* The thread pool: every item of a job runs exactly once, results are visible to the caller when
 * run returns, the thread count can change between jobs, a slow item does not hold up the rest
 * (the other threads take them), parked workers use no CPU, the pool frees cleanly whether its
 * workers spin or sleep, and bn_parallel_for and bn_parallel_ranges use the pool only from their
 * threshold up. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>
#include "harness.h"
#include "core/threadpool.h"

#define MAXT 8

static void test_split_range(void) {
    static const long aligns[] = {1, 4, 16};
    int bad = 0;
    for (long n = 0; n <= 100; n++) {
        for (size_t a = 0; a < 3; a++) {
            for (int nth = 1; nth <= MAXT; nth++) {
                long expect = 0, longest = 0, shortest = n;
                for (int ith = 0; ith < nth; ith++) {
                    long b, e;
                    bn_split_range(n, aligns[a], ith, nth, &b, &e);
                    if (b != expect || e < b || (b % aligns[a] && b != n)) bad++;
                    expect = e;
                    if (e - b > longest) longest = e - b;
                    if (e - b < shortest) shortest = e - b;
                }
                if (expect != n) bad++;
                /* near-equal: with align 1 no part exceeds another by more than one */
                if (aligns[a] == 1 && longest - shortest > 1) bad++;
            }
        }
    }
    CHECK(bad == 0, "%d bad split_range results", bad);
    long b, e;
    bn_split_range(20, 16, 1, 2, &b, &e);
    CHECK(b == 16 && e == 20, "aligned split [%ld, %ld)", b, e);
}

typedef struct {
    const long *data;
    long n;
    long partial[MAXT];
    atomic_int calls[MAXT];
    atomic_int wrong_nth;
    int expect_nth;
} sum_job;

static void sum_task(void *arg, int ith, int nth) {
    sum_job *j = arg;
    long b, e, s = 0;
    if (nth != j->expect_nth) atomic_fetch_add(&j->wrong_nth, 1);
    bn_split_range(j->n, 1, ith, nth, &b, &e);
    for (long i = b; i < e; i++) s += j->data[i];
    j->partial[ith] = s;
    atomic_fetch_add(&j->calls[ith], 1);
}

/* Runs one sum job with the pool's current thread count; 1 if the result is right. */
static int run_sum(bn_threadpool *pool, sum_job *j, long expect) {
    int nth = bn_threadpool_threads(pool);
    j->expect_nth = nth;
    for (int i = 0; i < MAXT; i++) {
        j->partial[i] = 0;
        atomic_store(&j->calls[i], 0);
    }
    bn_threadpool_run(pool, sum_task, j);
    long total = 0;
    int ok = atomic_load(&j->wrong_nth) == 0;
    for (int i = 0; i < MAXT; i++) {
        total += j->partial[i];
        ok &= atomic_load(&j->calls[i]) == (i < nth ? 1 : 0);
    }
    return ok && total == expect;
}

static void test_sums(void) {
    enum { N = 100003 };
    static long data[N];
    long expect = 0;
    for (long i = 0; i < N; i++) expect += data[i] = (i * 7919) % 1000 - 500;
    sum_job job = {.data = data, .n = N};
    bn_threadpool *pool = bn_threadpool_new(MAXT);
    CHECK(pool != NULL, "pool");
    CHECK(bn_threadpool_threads(pool) == MAXT, "starts with max threads");
    for (int nth = 1; nth <= MAXT; nth++) {
        bn_threadpool_set_threads(pool, nth);
        int bad = 0;
        for (int rep = 0; rep < 200; rep++) bad += !run_sum(pool, &job, expect);
        CHECK(bad == 0, "%d wrong sums with %d threads", bad, nth);
    }
    /* a changing thread count between consecutive jobs, including 1 (no workers involved) */
    unsigned seed = 12345;
    int bad = 0;
    for (int rep = 0; rep < 5000; rep++) {
        seed = seed * 1103515245u + 12345u;
        bn_threadpool_set_threads(pool, 1 + (int)((seed >> 16) % MAXT));
        bad += !run_sum(pool, &job, expect);
    }
    CHECK(bad == 0, "%d wrong sums with changing thread counts", bad);
    bn_threadpool_set_threads(pool, 0);
    CHECK(bn_threadpool_threads(pool) == 1, "clamped up to 1");
    bn_threadpool_set_threads(pool, 99);
    CHECK(bn_threadpool_threads(pool) == MAXT, "clamped down to max");
    bn_threadpool_free(pool);
}

/* Counts the calls and the items of a bn_parallel_ranges job; each range must be aligned. */
typedef struct {
    atomic_int calls;
    atomic_long items;
    atomic_int misaligned;
    long align;
} range_count;

static void count_range(const void *arg, long begin, long end) {
    range_count *c = (range_count *)arg;
    atomic_fetch_add(&c->calls, 1);
    atomic_fetch_add(&c->items, end - begin);
    if (begin % c->align) atomic_fetch_add(&c->misaligned, 1);
}

/* bn_parallel_for / bn_parallel_ranges: the pool at or above the threshold, this thread below it
 * or without a pool; every item handled once either way. */
static void test_parallel_for(void) {
    enum { N = 100003 };
    static long data[N];
    long expect = 0;
    for (long i = 0; i < N; i++) expect += data[i] = (i * 7919) % 1000 - 500;
    bn_threadpool *pool = bn_threadpool_new(MAXT);
    CHECK(pool != NULL, "pool");
    const struct { bn_threadpool *pool; int64_t min_parallel; int nth; } cases[] = {
        {pool, N, MAXT}, {pool, N + 1, 1}, {NULL, 0, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sum_job j = {.data = data, .n = N, .expect_nth = cases[i].nth};
        bn_parallel_for(cases[i].pool, N, cases[i].min_parallel, sum_task, &j);
        long total = 0;
        int calls = 0;
        for (int t = 0; t < MAXT; t++) {
            total += j.partial[t];
            calls += atomic_load(&j.calls[t]);
        }
        CHECK(total == expect && calls == cases[i].nth && atomic_load(&j.wrong_nth) == 0,
              "parallel_for case %zu: %d calls", i, calls);
    }
    for (long n = 0; n < 200; n += 37) {
        range_count serial = {.align = 16}, parallel = {.align = 16};
        bn_parallel_ranges(pool, n, 16, n + 1, count_range, &serial);
        bn_parallel_ranges(pool, n, 16, 0, count_range, &parallel);
        CHECK(atomic_load(&serial.items) == n && atomic_load(&serial.calls) == (n > 0),
              "ranges of %ld on this thread", n);
        CHECK(atomic_load(&parallel.items) == n && atomic_load(&parallel.misaligned) == 0,
              "ranges of %ld on the pool", n);
    }
    bn_threadpool_free(pool);
}

/* Which thread ran each item, and how often. */
#define ITEMS 64
typedef struct {
    pthread_t ran_on[ITEMS];
    atomic_int runs[ITEMS];
    atomic_int wrong_n;
    int n, slow_ms;
} item_job;

static void item_task(void *arg, int i, int n) {
    item_job *j = arg;
    if (n != j->n || i < 0 || i >= n) {
        atomic_fetch_add(&j->wrong_n, 1);
        return;
    }
    if (i == 0 && j->slow_ms) nanosleep(&(struct timespec){0, j->slow_ms * 1000L * 1000L}, NULL);
    j->ran_on[i] = pthread_self();
    atomic_fetch_add(&j->runs[i], 1);
}

static int each_ran_once(item_job *j) {
    int ok = atomic_load(&j->wrong_n) == 0;
    for (int i = 0; i < ITEMS; i++) ok &= atomic_load(&j->runs[i]) == (i < j->n ? 1 : 0);
    return ok;
}

/* Jobs of any number of items, more or fewer than the threads: each item once. And one slow item
 * (a thread the OS keeps off its core looks the same to the others): the other threads run all
 * the rest meanwhile, where splitting the items evenly would leave half of them behind it. */
static void test_items(void) {
    bn_threadpool *pool = bn_threadpool_new(3);
    int bad = 0;
    for (int rep = 0; rep < 300; rep++) {
        item_job j = {.n = rep % (ITEMS + 1)};
        bn_threadpool_set_threads(pool, 1 + rep % 3);
        bn_threadpool_run_items(pool, j.n, item_task, &j);
        bad += !each_ran_once(&j);
    }
    CHECK(bad == 0, "%d jobs ran an item twice, never or with the wrong count", bad);
    bn_threadpool_set_threads(pool, 2);
    item_job slow = {.n = ITEMS, .slow_ms = 300};
    bn_threadpool_run_items(pool, slow.n, item_task, &slow);
    int beside = 0;
    for (int i = 1; i < ITEMS; i++) beside += !pthread_equal(slow.ran_on[i], slow.ran_on[0]);
    CHECK(each_ran_once(&slow) && beside == ITEMS - 1,
          "with item 0 taking 300 ms, %d of the other %d items ran on another thread", beside, ITEMS - 1);
    bn_threadpool_free(pool);
}

static double cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void noop(void *arg, int ith, int nth) { (void)arg; (void)ith; (void)nth; }

/* After a job, the workers spin for a bounded time and then park: an idle pool burns no CPU. */
static void test_idle_parks(void) {
    bn_threadpool *pool = bn_threadpool_new(4);
    bn_threadpool_run(pool, noop, NULL);
    nanosleep(&(struct timespec){0, 200 * 1000 * 1000}, NULL); /* far longer than the spin phase */
    double c0 = cpu_ms();
    nanosleep(&(struct timespec){0, 300 * 1000 * 1000}, NULL);
    double used = cpu_ms() - c0;
    CHECK(used < 30.0, "idle pool used %.1f ms of CPU in 300 ms", used);
    bn_threadpool_free(pool); /* free while parked */
}

static void test_lifecycle(void) {
    bn_threadpool_free(bn_threadpool_new(MAXT)); /* never ran: workers parked from the start */
    bn_threadpool_free(NULL);
    CHECK(bn_threadpool_new(0) == NULL, "zero threads refused");
    CHECK(bn_threadpool_new(BN_THREADPOOL_MAX_THREADS + 1) == NULL, "more than %d threads refused",
          BN_THREADPOOL_MAX_THREADS);
    bn_threadpool *single = bn_threadpool_new(1);
    static long one[1] = {42};
    sum_job job = {.data = one, .n = 1};
    CHECK(single && run_sum(single, &job, 42), "single-thread pool");
    bn_threadpool_free(single);
    /* free right after a job, while the workers are still spinning */
    bn_threadpool *pool = bn_threadpool_new(MAXT);
    bn_threadpool_run(pool, noop, NULL);
    bn_threadpool_free(pool);
    CHECK(1, "freed while spinning");
}

int main(void) {
    alarm(120); /* a deadlock fails the test instead of hanging CI */
    test_split_range();
    test_sums();
    test_parallel_for();
    test_items();
    test_lifecycle();
    test_idle_parks();
    return bn_test_done("test_threadpool");
}
