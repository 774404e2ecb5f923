#!/usr/bin/env bash
# Run a command with DDS discovery kept on this machine and a ROS domain of its own.
#   scripts/ros_env.sh <command> [args...]
# The rule itself (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, ROS_LOCALHOST_ONLY=1 on Humble, a ROS_DOMAIN_ID drawn
# from the process id unless set) is written once, in ros2_monodepth/tools/ros_session.py, which runs here with
# any Python 3 and nothing installed.
HERE=$(cd "$(dirname "$0")/.." && pwd)
exec "${PYTHON:-python3}" "$HERE/ros2_monodepth/tools/ros_session.py" exec -- "$@"
