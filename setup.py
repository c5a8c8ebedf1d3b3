"""The corpus stage's C loops (src/fournil/corpus/_kernels.c); everything else is in pyproject.toml.
pip install builds them; after editing the C, `python setup.py build_ext --inplace` rebuilds them."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("fournil.corpus._kernels", ["src/fournil/corpus/_kernels.c"])])
