"""Build hook for the optional compiled accelerator (everything else is in pyproject.toml).

``runtime._fastzmq`` is Cython; if it cannot be built (no C compiler), the install goes on
without it and the transport uses pure pyzmq calls (see ``runtime/_zmqcalls.py``).
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("runtime._fastzmq", ["runtime/_fastzmq.pyx"], optional=True)],
        compiler_directives={"language_level": "3"},
        quiet=True,
    )
)
