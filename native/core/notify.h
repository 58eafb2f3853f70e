/* The service manager's notification protocol (sd_notify(3)) without libsystemd: one datagram of
 * "KEY=value" lines to the AF_UNIX socket systemd names in $NOTIFY_SOCKET, a path or, with a
 * leading '@', a name in the abstract namespace. */
#ifndef BN_NOTIFY_H
#define BN_NOTIFY_H

#include <stddef.h>

/* systemd drops notification datagrams longer than this (NOTIFY_BUFFER_MAX, PIPE_BUF). */
#define BN_NOTIFY_MAX_STATE 4096

/* Sends state (e.g. "READY=1\nSTATUS=online") to $NOTIFY_SOCKET. Returns 1 when sent, 0 when
 * NOTIFY_SOCKET is unset or empty (no service manager listens: nothing to do), -1 with a message
 * naming the socket when the state is empty or longer than BN_NOTIFY_MAX_STATE, the variable is
 * not an absolute path or @name that fits a socket address, or the datagram cannot be sent. */
int bn_notify(const char *state, char *err, size_t errlen);

#endif
