"""Packaging for dynconv_np: dynamic convolution in plain NumPy and Numba."""
from setuptools import find_packages, setup

EXTRAS = {
    "cuda": ["numba-cuda>=0.20"],
    "bench": ["torch"],
    "interop": ["torch"],     # dynconv_np.interop: .pt files, tensors, the comparison harness
    "tutorials": ["matplotlib>=3.7", "jupytext>=1.16", "nbclient>=0.10", "nbformat>=5.9",
                  "ipykernel>=6"],
}
# The test suite also runs the CUDA kernels under Numba's simulator, compiles every kernel to
# PTX for a real GPU (NVVM and NVRTC, no GPU needed) and executes the notebooks.
EXTRAS["test"] = (["pytest>=7", "hypothesis>=6.80", "scipy>=1.10",
                   "nvidia-nvvm; platform_system == 'Linux'",
                   "nvidia-cuda-nvrtc; platform_system == 'Linux'"]
                  + EXTRAS["cuda"] + EXTRAS["tutorials"])

setup(
    name="dynconv_np",
    version="0.1.0",
    description="Reference implementation of Dynamic Convolution (Chen et al., CVPR 2020) "
                "in NumPy and Numba, with explicit forward and backward passes.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["dynconv_np", "dynconv_np.*"]),
    package_data={"dynconv_np": ["data/*.gz", "data/*.txt"]},
    # SciPy: Numba's np.dot inside jitted code calls BLAS through scipy.linalg.cython_blas (the
    # "numba" backend's fallback when no CBLAS gemm is found, see backends/numba_fast/blas.py).
    # threadpoolctl: finds the loaded BLAS libraries (for that CBLAS gemm) and holds BLAS to one
    # thread inside Numba's parallel loops; without it OpenBLAS and Numba threads fight over
    # the cores.
    install_requires=["numpy>=1.23", "numba>=0.58", "scipy>=1.10", "threadpoolctl>=3.1"],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["dynconv_np=dynconv_np.cli:main"]},
    license="MIT",
)
