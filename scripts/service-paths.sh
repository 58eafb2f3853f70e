# What scripts/install and scripts/uninstall share (sourced, not run): where the service's files
# go, under an optional root (--root DIR or DESTDIR=DIR: a tree to install into instead of this
# machine, as packagers and the tests do), and how to tell whether systemd runs here.
# shellcheck shell=bash
# The variables are for the scripts that source this file.
# shellcheck disable=SC2034

UNIT_NAME=bonsai-edge.service
UNIT_FILE=/etc/systemd/system/$UNIT_NAME
CONFIG_DIR=/etc/bonsai-edge
MODELS_DIR=/srv/bonsai-edge/models
# StateDirectory= and CacheDirectory= with DynamicUser=yes: systemd keeps them under private/ and
# links them from the usual place.
STATE_DIRS=(/var/lib/bonsai-edge /var/lib/private/bonsai-edge /var/cache/bonsai-edge /var/cache/private/bonsai-edge)

# The root given, made absolute, without a trailing slash ("" for this machine).
install_root() {
  local root=$1
  [ -n "$root" ] || return 0
  mkdir -p "$root"
  (cd "$root" && pwd -P)
}

# The service manager is systemd and it is running (sd_booted(3)), and we install onto this machine.
systemd_manages_this_machine() {
  [ -z "$ROOT" ] && [ -d /run/systemd/system ]
}
