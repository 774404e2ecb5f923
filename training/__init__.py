"""ros2_monodepth_training: offline self-supervised training from ROS 2 bags (no ROS runtime needed).

Installed as the ``ros2_monodepth_training`` package from the top-level ``training/`` folder.
"""
