"""check_mermaid: the structural check of the Mermaid subset the diagram block produces.

Every valid example also parses with Mermaid 11.17's own parser. The invalid
ones either fail there too (keywords as ids, unbalanced brackets, no header) or
are valid Mermaid outside the subset (round nodes, other arrows, quotes).
"""

from __future__ import annotations

import pytest

from quartapp.engine.mermaid import MAX_LABEL, MAX_LINES, MERMAID_GBNF, MIN_LINES, check_mermaid

VALID = [
    "flowchart TD\n    A[Sun] --> B[Light]\n    B -->|warms| C[Air]\n",
    "flowchart LR\n    A[It's raining, isn't it?] --> B[Yes! Wet-ish. Very.]\n    B -->|it's ok, fine.| C[Done!]",
    "graph TB\n    A --> B\n    B --> C[End]",
    "flowchart TD\n    Start[Begin] --> Mid\n    Mid[Middle]\n\n    %% a comment\n    Mid --> End[Stop];",
    "  flowchart   TD  \n  A_1-->B_2[x]\n  B_2 --> C",
]

INVALID = [
    ("", "empty"),
    ("A --> B\nB --> C\nC --> D", "first line must be"),
    ("flowchart XY\n    A --> B\n    B --> C", "unknown direction"),
    ("flowchart TD\n    A[Sun --> B[Light]\n    B --> C", "unbalanced [ ]"),
    ("flowchart TD\n    A -->|warms B[Light]\n    B --> C", "unbalanced | |"),
    ("flowchart TD\n    A(round) --> B\n    B --> C", "unsupported syntax"),
    ('flowchart TD\n    A["quoted"] --> B\n    B --> C', "allowed set"),
    ("flowchart TD\n    A -.-> B\n    B --> C", "unsupported edge"),
    ("flowchart TD\n    A --> B --> C\n    B --> C", "one edge per line"),
    ("flowchart TD\n    A --- B\n    B --> C", "unsupported edge"),
    ("flowchart TD\n    A ==> B\n    B --> C", "unsupported edge"),
    ("flowchart TD\n    end --> B[x]\n    B --> C", "keyword"),
    ("flowchart TD\n    A --> style\n    B --> C", "keyword"),
    ("flowchart TD\n    A[two  spaces] --> B\n    B --> C", "allowed set"),
    ("flowchart TD\n    A[semi;colon] --> B\n    B --> C", "allowed set"),
    ("flowchart TD\n    A[" + "x" * (MAX_LABEL + 1) + "] --> B\n    B --> C", "longer than"),
    ("flowchart TD\n    A --> B", f"{MIN_LINES} to {MAX_LINES}"),
    ("flowchart TD\n" + "    A --> B\n" * (MAX_LINES + 1), f"{MIN_LINES} to {MAX_LINES}"),
    ("flowchart TD\n    A[One]\n    B[Two]", "no edges"),
    ("flowchart TD\n    subgraph S\n    A --> B\n    end", "not an edge"),
    ("```mermaid\nflowchart TD\n    A --> B\n    B --> C\n```", "first line must be"),
]


@pytest.mark.parametrize("source", VALID)
def test_valid_diagrams_pass(source: str) -> None:
    assert check_mermaid(source) == (True, [])


@pytest.mark.parametrize(("source", "error"), INVALID)
def test_invalid_diagrams_fail_with_a_reason(source: str, error: str) -> None:
    valid, errors = check_mermaid(source)
    assert not valid
    assert any(error in e for e in errors), errors


def test_errors_name_the_line() -> None:
    _, errors = check_mermaid("flowchart TD\n    A --> B\n    C(x) --> D")
    assert errors == ["line 3: unsupported syntax (only A[Label] nodes and --> edges are allowed)"]


def test_the_largest_output_the_grammar_allows_passes() -> None:
    """Longest ids, labels at the bound, an edge label on every line, the most lines."""
    label = ", ".join(["Abcdefghijkl"] * 8) + "?"
    line = f"    Abcdefgh[{label}] -->|{label}| Z1234567[{label}]\n"
    assert check_mermaid("flowchart LR\n" + line * MAX_LINES) == (True, [])


def test_grammar_is_built_from_the_same_bounds() -> None:
    assert f"line{{{MIN_LINES},{MAX_LINES}}}" in MERMAID_GBNF
    assert '"flowchart "' in MERMAID_GBNF
    assert "root" in MERMAID_GBNF.split("::=")[0]
