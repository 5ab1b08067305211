"""Keyset pages over the store's numbered rows (the audit log, the exception queue, divergent lots): a page's
cursor is its last row's number, so what a client sends back is checked to be one before it reaches a query."""

from __future__ import annotations

from gateway.errors import BadUserInput

MAX_PAGE = 500


def row_number(text: str) -> int | None:
    """The row number `text` spells, or None: ASCII digits only ("²".isdigit(), yet int("²") fails), within 64 bits."""
    return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else None


def page_start(first: int, after: str | None) -> int:
    """The row number a page of `first` rows starts after (0: from the start); BAD_USER_INPUT naming the argument
    for a size out of bounds or a cursor no page gave out."""
    if not 1 <= first <= MAX_PAGE:
        raise BadUserInput(f"first must be between 1 and {MAX_PAGE}", argument="first")
    if not after:
        return 0
    if (start := row_number(after)) is None:
        raise BadUserInput(f"'{after[:64]}' is not a cursor this list gave out", argument="after")
    return start
