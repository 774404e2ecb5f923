"""ament_python package ros2_monodepth (colcon build in a ROS workspace, or pip install into a venv)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "ros2_monodepth"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]) + ["ros2_monodepth_training"],
    package_dir={"ros2_monodepth_training": "training"},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
    ],
    install_requires=["setuptools"],
    # what colcon looks for to run the tests (`colcon test` runs pytest on test/ only when pytest is declared here)
    tests_require=["pytest"],
    extras_require={"test": ["pytest"]},
    zip_safe=False,
    maintainer="ros2_monodepth maintainers",
    maintainer_email="maintainers@ros2-monodepth.invalid",
    description="Self-supervised monocular depth, point clouds and visual odometry for ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "monodepth_node = ros2_monodepth.ros.node:main",
            "synthetic_camera = ros2_monodepth.ros.synthetic_camera:main",
            "ros2-monodepth-demo = ros2_monodepth.tools.demo:main",
            "ros2-monodepth-export = ros2_monodepth.tools.export_cli:main",
            "ros2-monodepth-import = ros2_monodepth.tools.import_cli:main",
            "ros2-monodepth-bench = ros2_monodepth.tools.bench:main",
            "ros2-monodepth-gpu-check = ros2_monodepth.tools.gpu_check:main",
            "ros2-monodepth-synth = ros2_monodepth_training.synth_bag:main",
            "ros2-monodepth-train = ros2_monodepth_training.train:main",
            "ros2-monodepth-eval = ros2_monodepth_training.evaluate:main",
        ],
    },
)
