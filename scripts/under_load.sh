#!/usr/bin/env bash
# Run a command beside one busy process per core (BUSY=N for another count), to show that the tests wait on events
# and not on a quiet machine:  scripts/under_load.sh make test   (make test-under-load)
# The busy processes are plain shell loops; they are stopped when the command ends, however it ends.
set -u
n=${BUSY:-$(nproc)}
pids=()
for _ in $(seq "$n"); do
  ( while :; do :; done ) &
  pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null' EXIT INT TERM
echo "[under_load] $n busy process(es) beside: $*" >&2
"$@"
