"""The command line: options and the config file become one run of a source feeding its sinks.

``main`` parses the command line (proctop.cli.main), reads the config file
(proctop.cli.config) and writes the man page and completions from the same
parser (proctop.cli.manual). It is the only layer that knows every other one.
"""
