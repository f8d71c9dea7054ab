"""Textual UI: the live timeline, header, details panel and themes."""
