"""Thin ROS 2 adapter: message <-> numpy conversions, parameters, the node. Everything else lives in core."""
