"""Build hook for the optional compiled accelerator (everything else is in pyproject.toml).

``runtime._fastzmq`` is Cython; if it cannot be built (no Cython, no C compiler), the install
goes on without it and the transport uses pure pyzmq calls (see ``runtime/_zmqcalls.py``).
"""

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError:  # a build without isolation and without Cython: pure Python only
    ext_modules = []
else:
    ext_modules = cythonize(
        [Extension("runtime._fastzmq", ["runtime/_fastzmq.pyx"])],
        compiler_directives={"language_level": "3"},
        quiet=True,
    )
    for ext in ext_modules:
        ext.optional = True  # a failed compile skips it (cythonize drops the flag if given)

setup(ext_modules=ext_modules)
