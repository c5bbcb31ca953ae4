"""Installation script for lesionnet.

Install (CPU build of PyTorch first, so that pip does not pull a CUDA build)::

    pip install torch==2.13.0 -e ".[test]"
"""
from setuptools import find_packages, setup

CONSOLE_SCRIPTS = [
    "lesionnet_make_synthetic = lesionnet.cli.make_synthetic:main",
    "lesionnet_verify_dataset = lesionnet.cli.verify_dataset:main",
    "lesionnet_convert_dls = lesionnet.cli.convert_dls:main",
    "lesionnet_evaluate_tracking = lesionnet.cli.evaluate_tracking:main",
    "lesionnet_evaluate_detection = lesionnet.cli.evaluate_detection:main",
    "lesionnet_plan_and_preprocess = lesionnet.cli.plan_and_preprocess:main",
    "lesionnet_train = lesionnet.cli.train:main",
    "lesionnet_predict = lesionnet.cli.predict:main",
    "lesionnet_demo = lesionnet.cli.demo:main",
]

setup(
    name="lesionnet",
    version="0.1.0",
    description="Self-configuring lesion tracking and detection-by-tracking for 3D CT",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["lesionnet", "lesionnet.*"]),
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "SimpleITK>=2.2",
        "torch>=2.1",
        "batchgenerators>=0.25",
        "acvl-utils>=0.2",
        "blosc2>=2.0",
        "tqdm>=4.60",
        "matplotlib>=3.6",
    ],
    extras_require={
        "test": ["pytest>=7", "nibabel>=5"],
        "benchmark": ["monai>=1.3"],
    },
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
