/* Which CPUs the process runs on. A board with fast and slow cores (RK3588: four Cortex-A76, four
 * A55) runs each layer as fast as its slowest thread, so the engine's threads belong on the fast
 * ones (the board profile's cpus). Setting it for every thread of the process, before the model
 * loads, places the engine's thread pools too: a thread starts with its creator's CPUs. */
#ifndef BN_AFFINITY_H
#define BN_AFFINITY_H

#include <stddef.h>

/* CPU numbers are below this (firmware-profiles/schema.json allows up to 4095). */
#define BN_AFFINITY_MAX_CPUS 4096

/* The CPUs the calling thread may run on, ascending, into cpus[0..cap). Returns how many there
 * are (more than cap when cpus is too small), or -1 with a message. */
int bn_affinity_get(int *cpus, int cap, char *err, size_t errlen);

/* Moves every thread of this process onto cpus[0..n), each below BN_AFFINITY_MAX_CPUS (as far
 * as the kernel allows: CPUs offline or outside the process's cpuset are left out of each mask).
 * Returns how many threads were moved (those already there are not counted), or -1 with a
 * message saying why: EINVAL when none of the CPUs can take a thread, EPERM when a seccomp filter
 * (the service unit's SystemCallFilter=~@resources) or a security policy forbids it. A thread that
 * ends meanwhile is skipped. */
int bn_affinity_set_process(const int *cpus, int n, char *err, size_t errlen);

#endif
