"""Pieces of the patterns bodies and paths are checked against."""

from __future__ import annotations

END = r"(?![\s\S])"
"""The end of the text, in Python and ECMA-262 regexes alike. msgspec matches a pattern with
Python's `re.search`, where `$` also matches before a final newline ("R-4\n" would pass
`^...$`); JSON Schema patterns are ECMA-262, which has no `\\Z`."""
