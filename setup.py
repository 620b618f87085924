"""lhco_diffusion: full-phase-space resonant anomaly detection with point-cloud diffusion models.

TensorFlow is deliberately not in ``install_requires``: the CPU build (``tensorflow-cpu``) and the
GPU build (``tensorflow[and-cuda]``) are different distributions, and Horovod must be compiled
against whichever one is installed.  ``make install`` installs TensorFlow 2.15.1 first, then
Horovod 0.28.1, then this package; the README explains the cluster variant.
"""
from setuptools import find_packages, setup

setup(
    name="lhco_diffusion",
    version="0.1.0",
    description="Diffusion-model background generation and weakly supervised anomaly detection "
    "on the LHC Olympics dijet data (full phase space, Horovod-ready).",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["lhco_diffusion", "lhco_diffusion.*"]),
    install_requires=[
        "numpy==1.26.4",
        "scipy==1.13.1",
        "scikit-learn==1.5.2",
        "h5py==3.11.0",
        "pandas==2.2.3",
        "tables==3.9.2",
        "fastjet==3.4.2.1",
        "matplotlib==3.9.2",
        "mplhep==0.3.55",
        "pyyaml==6.0.2",
        "tqdm==4.66.5",
        "tensorflow-probability==0.23.0",
    ],
    extras_require={
        "test": ["pytest==8.3.3"],
        "pythia": ["pythia8mc==8.317.2"],
    },
)
