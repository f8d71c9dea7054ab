"""Text every sink shows, without Textual: what ``--summary`` shares with the screen.

``sanitize`` is the one choke point between untrusted text and a terminal;
``cells`` fits text to a width and formats times (and holds the row text limit);
``rows`` is what the timeline keeps per event; ``columns`` is the timeline's
column spec, which the view filter's ``key:value`` keys come from; ``board`` is
the failures board's column spec, drawn by the UI and by ``--summary``. Rich is
allowed here, Textual is not (tests/test_layers.py): ``--summary`` and
``--json`` import this and never Textual.
"""
