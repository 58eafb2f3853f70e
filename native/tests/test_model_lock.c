/* bn_model_lock: the weights of a loaded model (repacked copies and tensors read in place) are
 * locked, as the kernel counts them (VmLck), freeing the model unlocks them, and past the
 * memory-lock limit the call fails with the limit named and nothing locked. */
#define _GNU_SOURCE /* syscall */
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "model_harness.h"

/* VmLck of this process in KiB, -1 when unreadable. */
static long locked_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmLck: %ld kB", &kib) == 1) break;
    fclose(f);
    return kib;
}

/* Takes CAP_IPC_LOCK out of the effective set: with it (root in a container) the limit does not
 * apply. */
static void drop_ipc_lock(void) {
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &header, data) != 0) return;
    data[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
    syscall(SYS_capset, &header, data);
}

int main(void) {
    const long before = locked_kib();
    CHECK(before >= 0, "VmLck unreadable");
    bn_model *m = load("stories260K/stories260K.gguf");
    char err[512] = "";
    uint64_t bytes = 0;
    CHECK(bn_model_lock(m, &bytes, err, sizeof err) == 0, "lock: %s", err);
    /* the weights: every matrix (repacked or read in place), the embedding and the norms */
    CHECK(bytes >= 200000, "only %llu bytes locked", (unsigned long long)bytes);
    const long held = locked_kib();
    CHECK(held - before >= (long)(bytes / 1024), "VmLck grew by %ld KiB for %llu bytes", held - before, (unsigned long long)bytes);
    uint64_t again = 0;
    CHECK(bn_model_lock(m, &again, err, sizeof err) == 0 && again == bytes, "locking twice: %s", err);
    CHECK(locked_kib() == held, "locking twice changed VmLck");
    bn_model_free(m);
    CHECK(locked_kib() == before, "VmLck %ld KiB after the model was freed, %ld before", locked_kib(), before);

    drop_ipc_lock();
    const struct rlimit none = {0, 0};
    CHECK(setrlimit(RLIMIT_MEMLOCK, &none) == 0, "setrlimit");
    m = load("stories260K/stories260K.gguf");
    CHECK(bn_model_lock(m, &bytes, err, sizeof err) == -1, "locked beyond a limit of 0");
    CHECK(strstr(err, "RLIMIT_MEMLOCK, is 0.0 MiB") && strstr(err, "MiB of weights"), "message: %s", err);
    CHECK(locked_kib() == before, "a refused lock left %ld KiB locked", locked_kib() - before);
    bn_model_free(m);
    return bn_test_done("test_model_lock");
}
