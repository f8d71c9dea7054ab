"""Kernel protocol layer: proc connector wire format, the socket, and capability probing."""
