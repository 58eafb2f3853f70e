# What the docker-based arm64 scripts share (sourced, not run): a Docker daemon for the length of
# the script. Debian's docker.io installs dockerd without starting it; one started here is
# stopped when the script exits.
# shellcheck shell=bash

DOCKERD_PID=
stop_dockerd() {
  [[ -n $DOCKERD_PID ]] || return 0
  kill "$DOCKERD_PID" 2>/dev/null
  wait "$DOCKERD_PID" || true
}

# Starts dockerd unless one answers already (its log in build/dockerd.log).
ensure_dockerd() {
  docker info >/dev/null 2>&1 && return 0
  mkdir -p build
  dockerd >build/dockerd.log 2>&1 &
  DOCKERD_PID=$!
  trap stop_dockerd EXIT
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && return 0; sleep 1; done
  tail -20 build/dockerd.log >&2
  echo "dockerd did not start (build/dockerd.log)" >&2
  return 1
}
