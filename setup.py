"""The compiled reader (proctop/sources/_creader.c), optional: without gcc or Python.h
setuptools warns and installs the Python reader alone (proctop.sources.creader)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "proctop.sources._creader",
            ["proctop/sources/_creader.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
            optional=True,
        )
    ]
)
