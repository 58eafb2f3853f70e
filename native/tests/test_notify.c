/* bn_notify: a datagram arrives whole at a socket path and at an abstract name, nothing is sent
 * without NOTIFY_SOCKET, and every refusal (no listener, relative path, address or state too long,
 * empty state) is an error naming the socket. */
#define _GNU_SOURCE /* mkdtemp, setenv */
#include <stddef.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>
#include "harness.h"
#include "core/notify.h"

/* A datagram socket bound to name ("@name": abstract), receiving with a timeout. */
static int listen_at(const char *name) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    const size_t len = strlen(name);
    memcpy(addr.sun_path, name, len);
    if (name[0] == '@') addr.sun_path[0] = '\0';
    const int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    const socklen_t addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (name[0] == '@' ? 0 : 1));
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, addr_len) != 0) {
        perror(name);
        exit(2);
    }
    const struct timeval timeout = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    return fd;
}

/* Notifies `state` through a socket bound at name (removed afterwards) and checks that exactly it
 * arrived. */
static void check_delivery(const char *name, const char *state) {
    const int fd = listen_at(name);
    setenv("NOTIFY_SOCKET", name, 1);
    char err[256] = "";
    CHECK(bn_notify(state, err, sizeof err) == 1, "%s: %s", name, err);
    char got[BN_NOTIFY_MAX_STATE + 1];
    const ssize_t n = recv(fd, got, sizeof got, 0);
    CHECK(n == (ssize_t)strlen(state) && memcmp(got, state, (size_t)n) == 0, "%s: received %zd bytes", name, n);
    close(fd);
    if (name[0] == '/') unlink(name);
}

/* bn_notify fails with a message that contains `expect`. */
static void check_refused(const char *socket_path, const char *state, const char *expect) {
    setenv("NOTIFY_SOCKET", socket_path, 1);
    char err[256] = "";
    CHECK(bn_notify(state, err, sizeof err) == -1, "%s accepted", socket_path);
    CHECK(strstr(err, "cannot notify systemd at ") && strstr(err, expect), "message \"%s\" lacks \"%s\"", err, expect);
}

int main(void) {
    char err[256] = "";
    unsetenv("NOTIFY_SOCKET");
    CHECK(bn_notify("READY=1", err, sizeof err) == 0, "sent without NOTIFY_SOCKET: %s", err);
    setenv("NOTIFY_SOCKET", "", 1);
    CHECK(bn_notify("READY=1", err, sizeof err) == 0, "sent with an empty NOTIFY_SOCKET: %s", err);

    char dir[] = "/tmp/bn-notify-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    char path[sizeof dir + 16];
    snprintf(path, sizeof path, "%s/notify", dir);
    check_delivery(path, "READY=1\nSTATUS=online");
    char abstract[64];
    snprintf(abstract, sizeof abstract, "@bn-notify-test-%ld", (long)getpid());
    check_delivery(abstract, "WATCHDOG=1");
    static char longest[BN_NOTIFY_MAX_STATE + 2];
    memset(longest, 'x', BN_NOTIFY_MAX_STATE);
    memcpy(longest, "STATUS=", 7);
    check_delivery(path, longest);

    longest[BN_NOTIFY_MAX_STATE] = 'x';
    check_refused(path, longest, "the state is 4097 bytes");
    check_refused(path, "", "the state is 0 bytes");
    check_refused(path, "READY=1", "No such file or directory");
    check_refused("run/notify", "READY=1", "must be an absolute path or @name");
    char too_long[200];
    memset(too_long, 'a', sizeof too_long - 1);
    too_long[0] = '/';
    too_long[sizeof too_long - 1] = '\0';
    check_refused(too_long, "READY=1", "longer than a socket address");
    rmdir(dir);
    return bn_test_done("test_notify");
}
