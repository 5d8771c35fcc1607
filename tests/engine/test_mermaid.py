"""check_mermaid: the structural check of the Mermaid subset the diagram block produces.

Every valid example also parses with Mermaid 11.17's own parser. The invalid
ones either fail there too (keywords as ids, unbalanced brackets, no header) or
are valid Mermaid outside the subset (round nodes, other arrows, quotes).
"""

from __future__ import annotations

import pytest

from quartapp.engine.mermaid import (
    CHAIN_IDS,
    MAX_LABEL,
    MAX_LINES,
    MAX_NODES,
    MERMAID_GBNF,
    MIN_LINES,
    MIN_NODES,
    check_mermaid,
)

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


def test_grammar_is_one_chain_of_labelled_nodes_from_the_same_bounds() -> None:
    """Each step continues from the node the step before ended on; the first MIN_NODES are
    required, the rest optional, and no step goes beyond MAX_NODES."""
    rules = {
        name.strip(): body for name, body in (line.split(" ::= ", 1) for line in MERMAID_GBNF.strip().splitlines())
    }
    assert rules["root"].strip() == '"flowchart TD\\n" step1'
    for k in range(1, MAX_NODES):
        src, dst = CHAIN_IDS[k - 1], CHAIN_IDS[k]
        body = rules[f"step{k}"]
        assert f'" {dst}[" label "]' in body
        assert body.startswith(f'"    {src}[" label "]' if k == 1 else f'"    {src} -->"')
        tail = body.rsplit('"', 1)[1].strip()
        if k + 1 == MAX_NODES:
            assert tail == ""
        else:
            assert tail == f"step{k + 1}" + ("?" if k + 1 >= MIN_NODES else "")


def test_the_longest_chain_the_grammar_allows_passes() -> None:
    label = " ".join(["Abcdefghijkl"] * 8)
    lines = [f"    A[{label}] -->|abcdefghijkl abcdefghijkl| B[{label}]"]
    lines += [f"    {CHAIN_IDS[k - 1]} -->|turns| {CHAIN_IDS[k]}[{label}]" for k in range(2, MAX_NODES)]
    assert check_mermaid("flowchart TD\n" + "\n".join(lines) + "\n") == (True, [])
