/* A persistent worker pool. A job is a number of items (bn_threadpool_run: one per thread) that
 * the threads claim one at a time from a shared counter, the calling thread among them; the job
 * is over when every item has finished, whoever ran it. So a thread that the OS keeps off its core
 * (a busy board, more runnable threads than cores) does not hold the others up: its items are run
 * by the threads that are running, and it has nothing left to do when it gets the core back.
 * Workers that just finished a job poll for the next for a bounded number of pause instructions
 * (consecutive matmuls of a forward pass follow each other within microseconds), then park on a
 * condition variable so that an idle daemon costs no CPU. The caller waits for the job's end the
 * same way: spin briefly, then sleep. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include "core/threadpool.h"

/* Polls before parking: on the order of 0.1-1 ms depending on the pause latency of the core. */
#define BN_SPIN_LIMIT 20000

/* The job in one word, so that a claim is one compare-and-swap on everything that identifies it:
 * generation (22 bits, wrapping) | thread count (10) | items (16) | next unclaimed item (16). A
 * claim that succeeds names an item of the current job that nobody had, so that job cannot end
 * before it does: its fn and arg (written before the word that publishes it) stay valid meanwhile.
 * A wrapped generation can only make a worker that slept through 4 million jobs miss one, which
 * the others then run. */
#define GEN_SHIFT 42
#define THREADS_SHIFT 32
#define ITEMS_SHIFT 16
#define FIELD_MASK 0xffffull
#define THREADS_MASK 0x3ffull

struct bn_threadpool {
    pthread_mutex_t mu;
    pthread_cond_t wake;     /* a new job (or stop) was published */
    pthread_cond_t done;     /* the current job's items have all finished */
    atomic_ullong job;
    atomic_int finished;     /* items of the current job that have finished */
    atomic_int stop;
    atomic_int n_threads;    /* active count for the next job */
    int max_threads;
    /* the current job, written before the store to `job` that publishes it */
    bn_task_fn fn;
    void *arg;
    pthread_t *workers;      /* max_threads - 1 of them; worker i runs as thread i + 1 */
    struct bn_worker *slots;
};

struct bn_worker {
    bn_threadpool *pool;
    int ith;
};

/* One step of a spin-wait. Every 64th step yields the core: when there are more runnable
 * threads than cores (other daemons on a Pi, or more threads than cores) the thread we wait
 * for may be the one our spinning keeps off the CPU. */
static inline void spin_step(int i) {
    if ((i & 63) == 63) {
        sched_yield();
        return;
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield");
#endif
}

static unsigned long long job_generation(unsigned long long job) { return job >> GEN_SHIFT; }
static int job_threads(unsigned long long job) { return (int)(job >> THREADS_SHIFT & THREADS_MASK); }
static int job_items(unsigned long long job) { return (int)(job >> ITEMS_SHIFT & FIELD_MASK); }
static int job_next(unsigned long long job) { return (int)(job & FIELD_MASK); }

/* Is there a job newer than generation `seen` that thread ith takes part in (or a stop)? */
static int has_work(bn_threadpool *p, unsigned long long seen, int ith, unsigned long long *job) {
    *job = atomic_load_explicit(&p->job, memory_order_acquire);
    if (atomic_load_explicit(&p->stop, memory_order_relaxed)) return 1;
    return job_generation(*job) != seen && ith < job_threads(*job);
}

/* Waits for work for thread ith. Only a worker that took part in the last job spins: the
 * next one is likely imminent; the others go straight to sleep. */
static unsigned long long wait_job(bn_threadpool *p, unsigned long long seen, int ith, int spin) {
    unsigned long long job;
    for (int i = 0; spin && i < BN_SPIN_LIMIT; i++) {
        if (has_work(p, seen, ith, &job)) return job;
        spin_step(i);
    }
    pthread_mutex_lock(&p->mu);
    while (!has_work(p, seen, ith, &job)) pthread_cond_wait(&p->wake, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return job;
}

/* Claims and runs items of job generation `gen` until none is left (or a newer job replaced it). */
static void run_items(bn_threadpool *p, unsigned long long gen) {
    unsigned long long job = atomic_load_explicit(&p->job, memory_order_acquire);
    while (job_generation(job) == gen && job_next(job) < job_items(job)) {
        if (!atomic_compare_exchange_weak_explicit(&p->job, &job, job + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue; /* job now holds the word as it is */
        const int n = job_items(job);
        p->fn(p->arg, job_next(job), n);
        if (atomic_fetch_add_explicit(&p->finished, 1, memory_order_acq_rel) + 1 == n) {
            /* taking the lock orders this signal after the caller's check-then-wait */
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
        job = atomic_load_explicit(&p->job, memory_order_acquire);
    }
}

static void *worker_main(void *arg) {
    struct bn_worker *w = arg;
    bn_threadpool *p = w->pool;
    unsigned long long seen = 0;
    int spin = 0;
    for (;;) {
        unsigned long long job = wait_job(p, seen, w->ith, spin);
        if (atomic_load(&p->stop)) break;
        seen = job_generation(job);
        run_items(p, seen);
        spin = 1;
    }
    return NULL;
}

static void stop_workers(bn_threadpool *p, int started) {
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < started; i++) pthread_join(p->workers[i], NULL);
}

static void destroy(bn_threadpool *p) {
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    free(p->slots);
    free(p->workers);
    free(p);
}

bn_threadpool *bn_threadpool_new(int max_threads) {
    if (max_threads < 1 || max_threads > BN_THREADPOOL_MAX_THREADS) return NULL;
    bn_threadpool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->max_threads = max_threads;
    atomic_init(&p->n_threads, max_threads);
    p->workers = calloc((size_t)max_threads, sizeof *p->workers);
    p->slots = calloc((size_t)max_threads, sizeof *p->slots);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    if (!p->workers || !p->slots) {
        destroy(p);
        return NULL;
    }
    for (int i = 0; i < max_threads - 1; i++) {
        p->slots[i] = (struct bn_worker){p, i + 1};
        if (pthread_create(&p->workers[i], NULL, worker_main, &p->slots[i]) != 0) {
            stop_workers(p, i);
            destroy(p);
            return NULL;
        }
    }
    return p;
}

void bn_threadpool_free(bn_threadpool *pool) {
    if (!pool) return;
    stop_workers(pool, pool->max_threads - 1);
    destroy(pool);
}

void bn_threadpool_set_threads(bn_threadpool *pool, int n_threads) {
    if (n_threads < 1) n_threads = 1;
    if (n_threads > pool->max_threads) n_threads = pool->max_threads;
    atomic_store(&pool->n_threads, n_threads);
}

int bn_threadpool_threads(const bn_threadpool *pool) {
    return atomic_load(&((bn_threadpool *)pool)->n_threads);
}

static void wait_done(bn_threadpool *p, int n_items) {
    for (int i = 0; i < BN_SPIN_LIMIT; i++) {
        if (atomic_load_explicit(&p->finished, memory_order_acquire) == n_items) return;
        spin_step(i);
    }
    pthread_mutex_lock(&p->mu);
    while (atomic_load_explicit(&p->finished, memory_order_acquire) != n_items) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void bn_threadpool_run_items(bn_threadpool *pool, int n_items, bn_task_fn fn, void *arg) {
    const int nth = atomic_load(&pool->n_threads);
    if (nth == 1 || n_items <= 1) {
        for (int i = 0; i < n_items; i++) fn(arg, i, n_items);
        return;
    }
    const unsigned long long gen = (job_generation(atomic_load_explicit(&pool->job, memory_order_relaxed)) + 1) &
                                   ((1ull << (64 - GEN_SHIFT)) - 1);
    pool->fn = fn;
    pool->arg = arg;
    atomic_store_explicit(&pool->finished, 0, memory_order_relaxed);
    pthread_mutex_lock(&pool->mu);
    atomic_store_explicit(&pool->job,
                          gen << GEN_SHIFT | (unsigned long long)nth << THREADS_SHIFT |
                              (unsigned long long)n_items << ITEMS_SHIFT,
                          memory_order_release);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mu);
    run_items(pool, gen);
    wait_done(pool, n_items);
}

void bn_threadpool_run(bn_threadpool *pool, bn_task_fn fn, void *arg) {
    bn_threadpool_run_items(pool, atomic_load(&pool->n_threads), fn, arg);
}

void bn_split_range(long n, long align, int ith, int nth, long *begin, long *end) {
    if (align < 1) align = 1;
    long units = (n + align - 1) / align;
    /* 64-bit products: units * nth cannot overflow for any realistic tensor */
    long long u0 = (long long)units * ith / nth, u1 = (long long)units * (ith + 1) / nth;
    *begin = u0 * align < n ? (long)(u0 * align) : n;
    *end = u1 * align < n ? (long)(u1 * align) : n;
}

void bn_parallel_for(bn_threadpool *pool, int64_t n_items, int64_t min_parallel, bn_task_fn fn, void *arg) {
    if (pool && n_items >= min_parallel)
        bn_threadpool_run(pool, fn, arg);
    else
        fn(arg, 0, 1);
}

typedef struct range_job {
    bn_range_fn fn;
    const void *arg;
    long n, align;
} range_job;

static void range_task(void *p, int ith, int nth) {
    const range_job *j = p;
    long begin, end;
    bn_split_range(j->n, j->align, ith, nth, &begin, &end);
    if (begin < end) j->fn(j->arg, begin, end);
}

void bn_parallel_ranges(bn_threadpool *pool, long n, long align, long min_parallel, bn_range_fn fn, const void *arg) {
    range_job j = {fn, arg, n, align};
    bn_parallel_for(pool, n, min_parallel, range_task, &j);
}
