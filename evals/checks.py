"""What a learner would judge, as checks: is the answer usable, not only does it parse.

Each check returns the list of problems it found (empty: usable). They are deliberately
simple and explainable (word overlap, counts, shapes), so a failure says what a reader of
the output would have noticed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from quartapp.blocks.diagram import EXAMPLES as DIAGRAM_EXAMPLES
from quartapp.engine.mermaid import _EDGE, _NODE_LINE

#: Words too common to show that an answer is about its topic.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "how",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "the",
        "this",
        "that",
        "to",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "with",
        "we",
        "you",
        "your",
        "our",
        "their",
        "they",
        "them",
        "there",
        "these",
        "those",
        "was",
        "were",
        "will",
        "would",
        "make",
        "makes",
        "made",
        "work",
        "works",
        "about",
        "into",
        "than",
        "then",
        "also",
        "more",
        "most",
        "some",
        "such",
    ]
)
#: Text the prompts put around the learner's input: an answer that repeats it echoed the prompt.
PROMPT_MARKERS = ("<<<", ">>>", "The topic:", "The learner's question", "Write 3 questions", "Reply with")
#: The example nodes of the diagram prompt (the old one's and the worked example's); a diagram
#: that reuses them copied the prompt.
PROMPT_EXAMPLE_LABELS = frozenset(
    {"sun", "light", "air", "first step", "second step", "third step"}
    | {label.lower() for _, source in DIAGRAM_EXAMPLES for label in re.findall(r"\[([^\]]+)\]", source)}
)
#: A label ending on one of these was cut off ("The paper is then turned over and the").
TRAILING_WORDS = frozenset(
    {"a", "an", "the", "of", "to", "and", "or", "in", "into", "by", "from", "with", "for", "its", "their", "that"}
)
QUIZ_FIELDS = ("question", "choices", "answer_index", "explanation")
MAX_CHOICE_WORDS = 8
MAX_CHOICE_CHARS = 60

_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")


def keywords(topic: str) -> set[str]:
    """The topic's content words, lower case, as 5-letter stems (rain, rains, raining)."""
    return {w.lower()[:5] for w in _WORD.findall(topic) if w.lower() not in STOPWORDS and len(w) > 2}


def mentions_topic(text: str, topic: str) -> bool:
    stems = keywords(topic)
    found = {w.lower()[:5] for w in _WORD.findall(text)}
    return not stems or bool(stems & found)


def sentences(text: str) -> list[str]:
    plain = re.sub(r"[*#_`>]", " ", text)
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", plain.strip()) if _WORD.search(s)]


def check_text(text: str, topic: str, *, eli10: bool = False) -> list[str]:
    """An answer or an ELI10: not the prompt echoed, a few sentences, on the topic."""
    problems = [f"echoes the prompt ({m!r})" for m in PROMPT_MARKERS if m.lower() in text.lower()]
    found = sentences(text)
    if len(found) < 3 or len(_SENTENCE_END.findall(text)) < 2:
        problems.append(f"{len(found)} sentence(s): not a few sentences")
    if not mentions_topic(text, topic):
        problems.append(f"none of the topic's words {sorted(keywords(topic))} appear")
    if eli10 and found:
        words = [len(_WORD.findall(s)) for s in found]
        if sum(words) / len(words) > 16 or max(words) > 30:
            problems.append(
                f"sentences of {sum(words) / len(words):.0f} words on average, up to {max(words)}: not short"
            )
    return problems


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", text.lower()).split())


def check_quiz(questions: Iterable[Mapping[str, Any]], asked: int) -> list[str]:
    """Exactly ``asked`` distinct questions, four distinct short choices each, the answer among them."""
    items = list(questions)
    problems = [] if len(items) == asked else [f"{len(items)} questions, {asked} asked"]
    seen: set[str] = set()
    for n, q in enumerate(items, 1):
        key = _norm(str(q.get("question", "")))
        if key in seen:
            problems.append(f"question {n} repeats an earlier one")
        seen.add(key)
        choices = [str(c) for c in q.get("choices", [])]
        if len(choices) != 4 or len({_norm(c) for c in choices}) != 4:
            problems.append(f"question {n}: not four distinct choices {choices}")
        for choice in choices:
            if re.search(r'[{}\[\]":<>]', choice) or any(f in choice.lower() for f in QUIZ_FIELDS):
                problems.append(f"question {n}: a choice holds markup or a field name: {choice!r}")
            elif len(choice.split()) > MAX_CHOICE_WORDS or len(choice) > MAX_CHOICE_CHARS or not choice.strip():
                problems.append(f"question {n}: a choice is not a short phrase: {choice!r}")
        index = q.get("answer_index")
        if not isinstance(index, int) or not 0 <= index < len(choices):
            problems.append(f"question {n}: the answer is not among the choices")
    return problems


def diagram_graph(source: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Nodes (id -> label, '' if none) and edges of a flowchart in the block's subset."""
    labels: dict[str, str] = {}
    edges: list[tuple[str, str]] = []
    for line in source.splitlines()[1:]:
        if match := _EDGE.fullmatch(line):
            for end in ("src", "dst"):
                node_id, label = match.group(end), match.group(f"{end}_label")
                if label or node_id not in labels:
                    labels[node_id] = label or labels.get(node_id, "")
            edges.append((match.group("src"), match.group("dst")))
        elif match := _NODE_LINE.fullmatch(line):
            labels[match.group("src")] = match.group("src_label") or labels.get(match.group("src"), "")
    return labels, edges


def _connected(nodes: Iterable[str], edges: list[tuple[str, str]]) -> bool:
    nodes = list(nodes)
    if not nodes:
        return False
    links: dict[str, set[str]] = {n: set() for n in nodes}
    for a, b in edges:
        links.setdefault(a, set()).add(b)
        links.setdefault(b, set()).add(a)
    seen, todo = {nodes[0]}, [nodes[0]]
    while todo:
        for other in links[todo.pop()] - seen:
            seen.add(other)
            todo.append(other)
    return seen >= set(nodes)


def check_diagram(source: str, topic: str) -> list[str]:
    """One connected flowchart of at least 4 labelled nodes about the topic, meaningful short ids,
    no copy of the prompt's example nodes."""
    labels, edges = diagram_graph(source)
    problems = []
    labelled = {n: label for n, label in labels.items() if label}
    if len(labelled) < 4:
        problems.append(f"{len(labelled)} labelled nodes, fewer than 4")
    if not _connected(labels, edges):
        problems.append("not one connected flowchart")
    text = " ".join(labelled.values())
    if labelled and not mentions_topic(text, topic):
        problems.append(f"no node label uses the topic's words {sorted(keywords(topic))}")
    copied = sorted({label for label in labelled.values() if label.lower() in PROMPT_EXAMPLE_LABELS})
    if len(copied) >= 2:
        problems.append(f"copies the prompt's example nodes {copied}")
    cut = sorted(label for label in labelled.values() if label.split()[-1].lower() in TRAILING_WORDS)
    if cut:
        problems.append(f"labels that stop mid-phrase {cut}")
    for node_id in labels:  # A, B2, Rain, seedGrows; not ACBDACAB
        if len(node_id) > 12 or (len(node_id) > 3 and node_id.isupper()):
            problems.append(f"id {node_id!r} is not short and meaningful")
            break
    return problems
