"""The report's one way to write a table."""

from __future__ import annotations

import pandas as pd


def markdown_table(table: pd.DataFrame, alignment: dict[str, str]) -> str:
    """A GitHub table of `alignment`'s columns in its order, padded so that the file reads as a
    table too."""
    return table[list(alignment)].to_markdown(
        index=False, colalign=[alignment[c] for c in alignment]
    )
