#!/usr/bin/env bash
# Run a command with DDS discovery kept on this machine and a ROS domain of its own.
#   scripts/ros_env.sh <command> [args...]
# ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (Jazzy+) and ROS_LOCALHOST_ONLY=1 (Humble) are forced: tests,
# demos and benchmarks must never multicast discovery beyond loopback. ROS_DOMAIN_ID is kept when set,
# otherwise drawn from the process id so parallel runs do not cross-talk.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
[ "${ROS_DISTRO:-}" = humble ] && export ROS_LOCALHOST_ONLY=1  # Humble spelling (deprecated on Jazzy)
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( ($$ % 90) + 5 ))}
exec "$@"
