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
deliberately much narrower than the check (one chain ``A --> B --> C`` of 4 to 8
labelled nodes with single-letter ids, which rules out Mermaid's keywords such as
``end``; edges only, one per line, indented four spaces), so anything the grammar
lets through passes the check. The check stays broad for providers that cannot
constrain decoding.

A generation cut by its token budget ends mid-line; every complete line is
still valid, so the caller trims the text after the last newline.
"""

from __future__ import annotations

import re

MIN_LINES = 2
MAX_LINES = 12
MAX_ID = 32
#: Labels are words of letters and digits joined by a space or a punctuation mark (and a space).
_LABEL_WORDS = 8
_WORD_LEN = 12
MAX_LABEL = _LABEL_WORDS * (_WORD_LEN + 2)
_HEADER_DIRECTIONS = ("TD", "TB", "LR", "RL", "BT")

#: The grammar draws one chain of nodes ``A --> B --> C ...``: each line continues from the node
#: the line before ended on, so the flowchart is connected, every node is labelled where it is
#: declared, and ids are the conventional single letters (a small model left to choose ids
#: wrote ``ACBDACAB``, and left to choose edges drew pairs that never met).
CHAIN_IDS = "ABCDEFGH"
MIN_NODES = 4
MAX_NODES = len(CHAIN_IDS)
#: Edge labels are a lower-case verb or two ("heats", "turns into"), not a second node label.
_EDGE_LABEL_WORDS = 2


def _chain_grammar() -> str:
    steps = []
    for k in range(1, MAX_NODES):  # line k: node k-1 to node k, so k + 1 nodes so far
        src = f'"    {CHAIN_IDS[0]}[" label "]' if k == 1 else f'"    {CHAIN_IDS[k - 1]}'
        rest = ""
        if k + 1 < MAX_NODES:
            rest = f" step{k + 1}" + ("?" if k + 1 >= MIN_NODES else "")
        steps.append(f'step{k} ::= {src} -->" elab? " {CHAIN_IDS[k]}[" label "]\\n"{rest}')
    return "\n".join(steps)


MERMAID_GBNF = rf"""
root  ::= "flowchart TD\n" step1
{_chain_grammar()}
elab  ::= "|" verb (" " verb){{0,{_EDGE_LABEL_WORDS - 1}}} "|"
verb  ::= [a-z]{{2,{_WORD_LEN}}}
label ::= word (sep word){{0,{_LABEL_WORDS - 1}}}
word  ::= [A-Za-z] [a-z]{{0,{_WORD_LEN - 1}}} | [0-9]{{1,4}}
sep   ::= " " | ", " | [-']
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
