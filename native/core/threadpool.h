/* A persistent pool of worker threads. A job is a number of items, each run once, by whichever
 * thread claims it first (the calling thread among them): a thread kept off its core does not
 * hold a job up. Workers spin briefly after a job and then park on a condition variable, so an
 * idle daemon uses no CPU. The thread count may change between jobs. */
#ifndef BN_THREADPOOL_H
#define BN_THREADPOOL_H

#include <stdint.h>

typedef struct bn_threadpool bn_threadpool;

/* One item of a job: item ith of nth. With bn_threadpool_run there is one item per active thread,
 * but any thread may run any item (several, one after another): per-item state belongs to the
 * item index, not to a thread. */
typedef void (*bn_task_fn)(void *arg, int ith, int nth);

/* Most threads a pool holds (and items a job has: 65535). */
#define BN_THREADPOOL_MAX_THREADS 1023
#define BN_THREADPOOL_MAX_ITEMS 65535

/* 1 <= max_threads <= BN_THREADPOOL_MAX_THREADS; threads start parked. NULL on failure. */
bn_threadpool *bn_threadpool_new(int max_threads);
void bn_threadpool_free(bn_threadpool *pool);
/* Clamped to [1, max_threads]; takes effect at the next run. */
void bn_threadpool_set_threads(bn_threadpool *pool, int n_threads);
int bn_threadpool_threads(const bn_threadpool *pool);
/* Runs fn(arg, i, nth) for every item i of nth = the active thread count, on the active threads,
 * and returns when every item has finished. Not re-entrant. */
void bn_threadpool_run(bn_threadpool *pool, bn_task_fn fn, void *arg);
/* The same for n_items items (0 <= n_items <= BN_THREADPOOL_MAX_ITEMS): fn(arg, i, n_items). */
void bn_threadpool_run_items(bn_threadpool *pool, int n_items, bn_task_fn fn, void *arg);

/* Runs fn over n_items of work: on every thread of pool, each taking its share, when there are at
 * least min_parallel items; otherwise as fn(arg, 0, 1) on the calling thread alone, as also when
 * pool is NULL. A small job ends sooner on this thread than a round trip through the pool takes. */
void bn_parallel_for(bn_threadpool *pool, int64_t n_items, int64_t min_parallel, bn_task_fn fn, void *arg);

/* Handles items [begin, end). */
typedef void (*bn_range_fn)(const void *arg, long begin, long end);
/* bn_parallel_for over items [0, n), each thread handling one contiguous range of them, a multiple
 * of align where possible (bn_split_range). */
void bn_parallel_ranges(bn_threadpool *pool, long n, long align, long min_parallel, bn_range_fn fn, const void *arg);

/* Splits [0, n) into nth near-equal contiguous parts, each a multiple of `align` where possible;
 * part ith is [*begin, *end). */
void bn_split_range(long n, long align, int ith, int nth, long *begin, long *end);

#endif
