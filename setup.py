"""The optional compiled IF kernel (onnx2snn/runtime/if_kernel.c); everything else is in
pyproject.toml. Where no C compiler works, the package installs without it."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "onnx2snn.runtime._if_kernel",
            ["onnx2snn/runtime/if_kernel.c"],
            extra_compile_args=["-O3", "-fno-trapping-math", "-ffp-contract=off"],
            optional=True,
        )
    ]
)
