"""The README's Python example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def library_snippet() -> str:
    section = README.read_text().split("## The library", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_library_example_runs(capsys):
    namespace: dict = {}
    exec(compile(library_snippet(), "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["fit"].edge > 0
    assert len(namespace["report"]) == len(namespace["views"])
    pruned = namespace["info"]
    assert pruned is not None and namespace["new_masks"] is not None
    assert capsys.readouterr().out.strip()
