"""What every process of this project that starts ROS shares: loopback-only discovery with a ROS_DOMAIN_ID of its
own (the one place this rule is written: the tests, the commands, ``scripts/ros_env.sh`` and CI all use it), the
Fast DDS profile for large messages, and the node's parameter file.

Also runs as a script with no package installed, for shell wrappers:

    python3 ros2_monodepth/tools/ros_session.py exec -- make test
"""

from __future__ import annotations

import os
import sys
from typing import Dict, MutableMapping, Optional, Sequence


def loopback_env(environ: Optional[MutableMapping[str, str]] = None) -> MutableMapping[str, str]:
    """Keep DDS discovery on this machine and pick a domain unless one is set, in ``environ`` (default
    ``os.environ``, so that child processes inherit it); returns it.

    ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` is Jazzy's (and later) rule; Humble spells it
    ``ROS_LOCALHOST_ONLY=1`` (deprecated on Jazzy, which warns about it), so that one is set on Humble only.
    """
    env = os.environ if environ is None else environ
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if env.get("ROS_DISTRO") == "humble":
        env["ROS_LOCALHOST_ONLY"] = "1"
    if not env.get("ROS_DOMAIN_ID"):
        env["ROS_DOMAIN_ID"] = str(5 + os.getpid() % 90)
    return env


def force_loopback_env() -> None:
    """``loopback_env`` on this process's environment."""
    loopback_env()


def use_large_message_dds_profile(environ: Optional[MutableMapping[str, str]] = None) -> str:
    """Point Fast DDS at the large-message profile (``ros.dds``) in ``environ`` (default ``os.environ``) unless the
    user has a profile of their own. Call after ``loopback_env``. Returns the profile in effect."""
    from ros2_monodepth.ros.dds import FASTDDS_PROFILE_ENV, large_message_dds_profile

    env = os.environ if environ is None else environ
    if not env.get(FASTDDS_PROFILE_ENV):
        env[FASTDDS_PROFILE_ENV] = large_message_dds_profile()
    return env[FASTDDS_PROFILE_ENV]


def params_file() -> str:
    """The node's parameter file, config/monodepth.yaml."""
    from ros2_monodepth.ros.dds import config_file

    return config_file("monodepth.yaml")


def _main(argv: Sequence[str]) -> int:
    if len(argv) >= 2 and argv[0] == "exec" and argv[1] == "--" and len(argv) > 2:
        env: Dict[str, str] = dict(os.environ)
        loopback_env(env)
        os.execvpe(argv[2], list(argv[2:]), env)
    print("usage: ros_session.py exec -- COMMAND [ARGS...]   (runs COMMAND with loopback-only DDS discovery)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
