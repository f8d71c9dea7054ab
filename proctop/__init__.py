"""proctop: watch what processes do, live, through the kernel's filtered proc connector."""

__version__ = "0.1.0"
