"""Command-line tools: demo, synthetic camera stream (ROS), benchmarks."""
