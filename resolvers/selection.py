"""What a query selects below the field being resolved: lets a resolver load at once, before its list is
completed, what every item of the list will ask for."""

from __future__ import annotations

from collections.abc import Sequence

from strawberry.types.nodes import SelectedField, Selection


def selects(selections: Sequence[Selection], *path: str) -> bool:
    """Whether `path` (field names, outermost first) is selected, through fragments too."""
    if not path:
        return True
    for selection in selections:
        if not isinstance(selection, SelectedField):
            if selects(selection.selections, *path):  # a fragment: its fields are the enclosing field's
                return True
        elif selection.name == path[0] and selects(selection.selections, *path[1:]):
            return True
    return False
