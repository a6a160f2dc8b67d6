"""Write one benchmark's section of docs/benchmarks.md, leaving the other sections as they are."""

from __future__ import annotations

from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def replace_section(heading: str, body: str, path: Path = DOCS) -> None:
    """Put ``heading`` + ``body`` in place of the section that starts with ``heading``.

    A section runs from its ``## `` heading line to the next ``## `` heading or the end of the
    file. A missing section is appended; a missing file is created with a ``# Benchmarks`` title.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "b.md"
        >>> p.write_text("# Benchmarks\\n\\n## A\\n\\nold\\n\\n## B\\n\\nkeep\\n")
        36
        >>> replace_section("## A", "new", p)
        >>> p.read_text()
        '# Benchmarks\\n\\n## A\\n\\nnew\\n\\n## B\\n\\nkeep\\n'
    """
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.splitlines()
    block = [heading, "", *body.strip("\n").splitlines(), ""]
    starts = [i for i, line in enumerate(lines) if line.strip() == heading]
    if starts:
        i = starts[0]
        j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("## ")), len(lines))
        lines[i:j] = block
    else:
        while lines and not lines[-1].strip():
            lines.pop()
        lines += ["", *block]
    while lines and not lines[-1].strip():
        lines.pop()
    path.write_text("\n".join(lines) + "\n")
