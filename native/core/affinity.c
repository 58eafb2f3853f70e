#define _GNU_SOURCE /* sched_setaffinity, CPU_ALLOC */
#include "core/affinity.h"

#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "core/common.h"

/* A thread started during a pass by a thread the pass has not reached yet gets its creator's old
 * CPUs; the passes go on until one finds every thread in place. Threads do not start without end,
 * so a few passes suffice. */
#define MAX_PASSES 8

int bn_affinity_get(int *cpus, int cap, char *err, size_t errlen) {
    cpu_set_t *set = CPU_ALLOC(BN_AFFINITY_MAX_CPUS);
    const size_t size = CPU_ALLOC_SIZE(BN_AFFINITY_MAX_CPUS);
    if (!set) return bn_fail(err, errlen, "out of memory");
    if (sched_getaffinity(0, size, set) != 0) {
        const int e = errno;
        CPU_FREE(set);
        return bn_fail(err, errlen, "sched_getaffinity: %s", strerror(e));
    }
    int n = 0;
    for (int cpu = 0; cpu < BN_AFFINITY_MAX_CPUS; cpu++) {
        if (!CPU_ISSET_S(cpu, size, set)) continue;
        if (n < cap) cpus[n] = cpu;
        n++;
    }
    CPU_FREE(set);
    return n;
}

/* One pass over /proc/self/task: each thread whose CPUs are not `want` is moved there. Returns the
 * threads moved, or -1 with errno set. */
static int move_threads(const cpu_set_t *want, cpu_set_t *have, size_t size) {
    DIR *dir = opendir("/proc/self/task");
    if (!dir) return -1;
    int moved = 0;
    for (struct dirent *entry; (entry = readdir(dir));) {
        char *end;
        const long tid = strtol(entry->d_name, &end, 10);
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9' || *end) continue; /* . and .. */
        if (sched_getaffinity((pid_t)tid, size, have) == 0 && CPU_EQUAL_S(size, have, want)) continue;
        if (sched_setaffinity((pid_t)tid, size, want) == 0) {
            moved++;
        } else if (errno != ESRCH) {
            const int e = errno;
            closedir(dir);
            errno = e;
            return -1;
        }
    }
    closedir(dir);
    return moved;
}

int bn_affinity_set_process(const int *cpus, int n, char *err, size_t errlen) {
    if (n < 1) return bn_fail(err, errlen, "no CPUs given");
    const size_t size = CPU_ALLOC_SIZE(BN_AFFINITY_MAX_CPUS);
    cpu_set_t *want = CPU_ALLOC(BN_AFFINITY_MAX_CPUS), *have = CPU_ALLOC(BN_AFFINITY_MAX_CPUS);
    int rc = 0;
    if (!want || !have) rc = bn_fail(err, errlen, "out of memory");
    if (rc == 0) CPU_ZERO_S(size, want);
    for (int i = 0; rc == 0 && i < n; i++) {
        if (cpus[i] < 0 || cpus[i] >= BN_AFFINITY_MAX_CPUS)
            rc = bn_fail(err, errlen, "CPU %d is not a CPU number (0 to %d)", cpus[i], BN_AFFINITY_MAX_CPUS - 1);
        else
            CPU_SET_S(cpus[i], size, want);
    }
    /* This thread first, and what the kernel made of the set is what the others must match: it
     * leaves out CPUs that are offline or outside the cpuset, and reports the rest. */
    if (rc == 0 && sched_getaffinity(0, size, have) != 0)
        rc = bn_fail(err, errlen, "sched_getaffinity: %s", strerror(errno));
    if (rc == 0 && sched_setaffinity(0, size, want) != 0)
        rc = bn_fail(err, errlen, "sched_setaffinity: %s", strerror(errno));
    if (rc == 0 && sched_getaffinity(0, size, want) != 0)
        rc = bn_fail(err, errlen, "sched_getaffinity: %s", strerror(errno));
    int moved = rc == 0 && !CPU_EQUAL_S(size, have, want);
    for (int pass = 0, more = 1; rc == 0 && more && pass < MAX_PASSES; pass++) {
        more = move_threads(want, have, size);
        if (more < 0)
            rc = bn_fail(err, errlen, "sched_setaffinity on a thread: %s", strerror(errno));
        else
            moved += more;
    }
    CPU_FREE(want);
    CPU_FREE(have);
    return rc == 0 ? moved : -1;
}
