/* bn_affinity_set_process: every thread of the process moves, the ones already running and the
 * ones started afterwards (they inherit it), a second call moves none, and CPUs that cannot take a
 * thread are an error that names the reason. Needs two CPUs to move between (skips otherwise). */
#define _GNU_SOURCE /* pthread_getaffinity_np */
#include <pthread.h>
#include <sched.h>
#include "harness.h"
#include "core/affinity.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static int done;

/* Waits until the test is done with it, so that its CPUs can be read while it runs. */
static void *idle(void *arg) {
    (void)arg;
    pthread_mutex_lock(&lock);
    while (!done) pthread_cond_wait(&wake, &lock);
    pthread_mutex_unlock(&lock);
    return NULL;
}

/* Whether thread t may run on exactly the one CPU `cpu`. */
static int only_on(pthread_t t, int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (pthread_getaffinity_np(t, sizeof set, &set) != 0) return 0;
    return CPU_COUNT(&set) == 1 && CPU_ISSET(cpu, &set);
}

int main(void) {
    char err[256] = "";
    int allowed[BN_AFFINITY_MAX_CPUS];
    const int n_allowed = bn_affinity_get(allowed, BN_AFFINITY_MAX_CPUS, err, sizeof err);
    CHECK(n_allowed >= 1, "bn_affinity_get: %s", err);
    if (n_allowed < 2) {
        fprintf(stderr, "SKIP: this process may run on one CPU only: nothing to move between\n");
        return 77;
    }
    const int target = allowed[n_allowed - 1];

    pthread_t before, after;
    CHECK(pthread_create(&before, NULL, idle, NULL) == 0, "pthread_create");
    const int moved = bn_affinity_set_process(&target, 1, err, sizeof err);
    CHECK(moved >= 2, "moved %d threads (this one and the one started before): %s", moved, err);
    CHECK(only_on(pthread_self(), target), "the calling thread is not on CPU %d only", target);
    CHECK(only_on(before, target), "a thread started before is not on CPU %d only", target);
    CHECK(pthread_create(&after, NULL, idle, NULL) == 0, "pthread_create");
    CHECK(only_on(after, target), "a thread started after did not inherit CPU %d", target);
    int now[BN_AFFINITY_MAX_CPUS];
    CHECK(bn_affinity_get(now, BN_AFFINITY_MAX_CPUS, err, sizeof err) == 1 && now[0] == target, "bn_affinity_get after the move");
    CHECK(bn_affinity_set_process(&target, 1, err, sizeof err) == 0, "a second call moved threads already there: %s", err);

    const int out_of_range = BN_AFFINITY_MAX_CPUS;
    CHECK(bn_affinity_set_process(&out_of_range, 1, err, sizeof err) == -1 && strstr(err, "not a CPU number"), "out of range: %s", err);
    /* The largest CPU number is no CPU on any machine that runs this test. */
    const int absent = BN_AFFINITY_MAX_CPUS - 1;
    CHECK(bn_affinity_set_process(&absent, 1, err, sizeof err) == -1 && strstr(err, "Invalid argument"), "absent CPU: %s", err);
    CHECK(only_on(before, target), "a failed call moved a thread");
    CHECK(bn_affinity_set_process(NULL, 0, err, sizeof err) == -1, "no CPUs accepted");

    /* Back to every CPU it had: all three threads move. */
    CHECK(bn_affinity_set_process(allowed, n_allowed, err, sizeof err) >= 3, "moving back: %s", err);
    CHECK(bn_affinity_get(now, BN_AFFINITY_MAX_CPUS, err, sizeof err) == n_allowed, "not back on %d CPUs", n_allowed);

    pthread_mutex_lock(&lock);
    done = 1;
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);
    pthread_join(before, NULL);
    pthread_join(after, NULL);
    return bn_test_done("test_affinity");
}
