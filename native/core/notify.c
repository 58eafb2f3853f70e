#define _GNU_SOURCE /* SOCK_CLOEXEC, MSG_NOSIGNAL */
#include "core/notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/common.h"

/* The caller runs on Node's event loop: a manager too busy to take a datagram must not hold it
 * for long, and one that cannot take it within this time is failing anyway. */
#define NOTIFY_SEND_TIMEOUT_MS 1000

int bn_notify(const char *state, char *err, size_t errlen) {
    const char *socket_path = getenv("NOTIFY_SOCKET");
    if (!socket_path || !*socket_path) return 0;
    const size_t state_len = strlen(state);
    if (state_len == 0 || state_len > BN_NOTIFY_MAX_STATE)
        return bn_fail(err, errlen, "cannot notify systemd at %s: the state is %zu bytes (1 to %d)", socket_path,
                       state_len, BN_NOTIFY_MAX_STATE);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    const size_t path_len = strlen(socket_path);
    if (socket_path[0] != '/' && socket_path[0] != '@')
        return bn_fail(err, errlen, "cannot notify systemd at %s: NOTIFY_SOCKET must be an absolute path or @name",
                       socket_path);
    /* A path needs its terminating NUL inside sun_path; an abstract name replaces '@' by NUL. */
    if (path_len >= sizeof addr.sun_path)
        return bn_fail(err, errlen, "cannot notify systemd at %s: longer than a socket address (%zu bytes)",
                       socket_path, sizeof addr.sun_path - 1);
    memcpy(addr.sun_path, socket_path, path_len);
    const int abstract = socket_path[0] == '@';
    if (abstract) addr.sun_path[0] = '\0';
    /* An abstract name is exactly its bytes: a trailing NUL would be part of the name. */
    const socklen_t addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len + (abstract ? 0 : 1));

    const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return bn_fail(err, errlen, "cannot notify systemd at %s: socket: %s", socket_path, strerror(errno));
    const struct timeval timeout = {.tv_sec = NOTIFY_SEND_TIMEOUT_MS / 1000, .tv_usec = (NOTIFY_SEND_TIMEOUT_MS % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    const ssize_t sent = sendto(fd, state, state_len, MSG_NOSIGNAL, (const struct sockaddr *)&addr, addr_len);
    const int send_errno = errno;
    close(fd);
    /* A datagram goes whole or not at all. */
    if (sent < 0) return bn_fail(err, errlen, "cannot notify systemd at %s: %s", socket_path, strerror(send_errno));
    return 1;
}
