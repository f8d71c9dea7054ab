"""Where events go: the Textual UI, JSON lines, the recorder, Prometheus metrics and the summary.

Every sink reads the model's events and writes them out; none of them reads
the kernel or opens a source (the command line, proctop.cli, wires a source to
its sinks). ``--json`` and ``--summary`` never import Textual: only
``proctop.sinks.ui`` does; the text they share with the UI (sanitizing, fitting,
the column specs) is ``proctop.sinks.text`` (tests/test_layers.py holds both).
"""
