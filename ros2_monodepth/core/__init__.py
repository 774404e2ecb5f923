"""Core of ros2_monodepth: everything that does not need a ROS runtime.

Nothing below this package imports rclpy or ROS messages, so training, export and benchmarks use it in a
plain Python environment.
"""
