"""The Mermaid subset the diagram block produces, twice: as a llama.cpp grammar that
constrains decoding, and as a Python check of what reached the client.

The subset is a flowchart with plain edges::

    flowchart TD
        A[Sun] --> B[Light]
        B -->|warms| C[Air]

Labels keep to characters Mermaid accepts inside ``[]`` or ``||`` without quotes
(letters, digits, single spaces and ``, . ' ? ! -`` between words), so a small
model cannot emit brackets, quotes, ``--`` or ``end`` in a place that breaks the
parser. Both halves are built from the same constants below; the grammar is
deliberately a little narrower than the check (node ids start with a capital
letter, which rules out Mermaid's lower-case keywords such as ``end``, and are
at most 8 characters; it writes edges only, one per line, indented four
spaces), so anything the grammar lets through passes the check.

A generation cut by its token budget ends mid-line; every complete line is
still valid, so the caller trims the text after the last newline.
"""

from __future__ import annotations

import re

MIN_LINES = 2
MAX_LINES = 12
MAX_ID = 32
#: The grammar's ids are shorter than the check allows: a small model fills long ids with noise.
_GRAMMAR_MAX_ID = 8
#: Labels are words of letters and digits joined by a space or a punctuation mark (and a space).
_LABEL_WORDS = 8
_WORD_LEN = 12
MAX_LABEL = _LABEL_WORDS * (_WORD_LEN + 2)
DIRECTIONS = ("TD", "LR")
_HEADER_DIRECTIONS = ("TD", "TB", "LR", "RL", "BT")

MERMAID_GBNF = rf"""
root  ::= "flowchart " dir "\n" line{{{MIN_LINES},{MAX_LINES}}}
dir   ::= {" | ".join(f'"{d}"' for d in DIRECTIONS)}
line  ::= "    " src " -->" elab? " " node "\n"
src   ::= id | node
node  ::= id "[" label "]"
elab  ::= "|" label "|"
id    ::= [A-Z] [A-Za-z0-9_]{{0,{_GRAMMAR_MAX_ID - 1}}}
label ::= word (sep word){{0,{_LABEL_WORDS - 1}}} [.?!]?
word  ::= [A-Za-z0-9]{{1,{_WORD_LEN}}}
sep   ::= " " | [,.'?!-] " "?
"""

_ID = r"[A-Za-z][A-Za-z0-9_]*"
_LABEL = r"[A-Za-z0-9]+(?:(?: |[,.'?!-] ?)[A-Za-z0-9]+)*[.?!]?"
_NODE = rf"(?P<{{name}}>{_ID})(?:\[(?P<{{name}}_label>[^\[\]]*)\])?"
_HEADER = re.compile(r"(?:flowchart|graph)\s+(?P<dir>\S+)")
_EDGE = re.compile(
    r"\s*" + _NODE.format(name="src") + r"\s*-->(?:\|(?P<elabel>[^|]*)\|)?\s*" + _NODE.format(name="dst") + r"\s*;?"
)
_NODE_LINE = re.compile(r"\s*" + _NODE.format(name="src") + r"\s*;?")
_LABEL_RE = re.compile(_LABEL)
_OTHER_ARROW = re.compile(r"--|==|-\.|\.-|<-|->")
#: Words Mermaid 11's flowchart parser rejects as node ids (each tried with mermaid.parse).
RESERVED_IDS = frozenset(
    {
        "call",
        "class",
        "classDef",
        "click",
        "end",
        "flowchart",
        "graph",
        "href",
        "interpolate",
        "linkStyle",
        "style",
        "subgraph",
    }
)


def _check_label(where: str, label: str | None, errors: list[str]) -> None:
    if label is None:
        return
    if len(label) > MAX_LABEL:
        errors.append(f"{where}: label longer than {MAX_LABEL} characters")
    elif not _LABEL_RE.fullmatch(label):
        errors.append(f"{where}: label {label!r} has characters or spacing outside the allowed set")


def _check_id(where: str, node_id: str, errors: list[str]) -> None:
    if node_id in RESERVED_IDS:
        errors.append(f"{where}: {node_id!r} is a Mermaid keyword and cannot be a node id")
    elif len(node_id) > MAX_ID:
        errors.append(f"{where}: node id longer than {MAX_ID} characters")


def _diagnose(where: str, line: str) -> str:
    """Say what is wrong with a line that matched neither an edge nor a node."""
    rest = line.replace("-->", " ")
    if _OTHER_ARROW.search(rest):
        return f"{where}: unsupported edge (only --> and -->|label| are allowed)"
    if line.count("[") != line.count("]"):
        return f"{where}: unbalanced [ ]"
    if line.count("|") % 2:
        return f"{where}: unbalanced | | around an edge label"
    if any(c in rest for c in '(){}<>"`'):
        return f"{where}: unsupported syntax (only A[Label] nodes and --> edges are allowed)"
    return f"{where}: not an edge or node definition (one edge per line)"


def check_mermaid(source: str) -> tuple[bool, list[str]]:
    """Check ``source`` against the subset; returns (valid, errors), errors empty when valid."""
    errors: list[str] = []
    lines = [
        (n, line) for n, line in enumerate(source.splitlines(), 1) if line.strip() and not line.strip().startswith("%%")
    ]
    if not lines:
        return False, ["the diagram is empty"]
    n, header = lines[0]
    match = _HEADER.fullmatch(header.strip())
    if match is None:
        errors.append(f"line {n}: the first line must be 'flowchart TD' or 'flowchart LR'")
    elif match["dir"] not in _HEADER_DIRECTIONS:
        errors.append(f"line {n}: unknown direction {match['dir']!r}")
    body = lines[1:]
    if not MIN_LINES <= len(body) <= MAX_LINES:
        errors.append(f"the diagram has {len(body)} lines after the header; {MIN_LINES} to {MAX_LINES} are allowed")
    edges = 0
    for n, line in body:
        where = f"line {n}"
        edge = _EDGE.fullmatch(line)
        if edge is not None:
            edges += 1
            _check_id(where, edge["src"], errors)
            _check_id(where, edge["dst"], errors)
            _check_label(where, edge["src_label"], errors)
            _check_label(where, edge["elabel"], errors)
            _check_label(where, edge["dst_label"], errors)
            continue
        node = _NODE_LINE.fullmatch(line)
        if node is not None and node["src_label"] is not None:
            _check_id(where, node["src"], errors)
            _check_label(where, node["src_label"], errors)
            continue
        errors.append(_diagnose(where, line))
    if body and not edges:
        errors.append("the diagram has no edges")
    return not errors, errors
