"""One-off studies behind lab/RESULTS.md."""
from pathlib import Path
from typing import Sequence


def report(lines: Sequence[str], out: Path) -> None:
    """Print a study's report and write it to ``out``."""
    text = "\n".join(lines) + "\n"
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
