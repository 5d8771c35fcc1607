"""The diagram block: a Mermaid flowchart, streamed as ``diagram.partial`` source."""

from __future__ import annotations

import re

from ..engine.blocks import Block, BlockRequest, Event, FollowUp
from ..engine.mermaid import MERMAID_GBNF, check_mermaid
from ..providers.base import ProviderBadOutput
from ..streams.events import BlockResult, DiagramCheck, DiagramPartialData, Fold

DIAGRAM_MAX_TOKENS = 400

SYSTEM_PROMPT = (
    "You draw Mermaid flowcharts that explain a topic step by step. Reply with Mermaid source only, no "
    "prose and no code fences: the first line is `flowchart TD`, then 3 to 7 lines, each going on from "
    "the node the line before ended on, like `A[First step] --> B[Second step]` then "
    "`B -->|causes| C[Third step]`. Each label is a short phrase of 2 to 5 words about the topic, using its words."
)

#: One worked example, on a topic far from a school page's diagrams so its nodes are not copied:
#: the model learns the chain, labels that name the topic's things, and short edge verbs.
EXAMPLES = (
    (
        "How a bicycle moves",
        "flowchart TD\n"
        "    A[Rider pushes the bicycle pedals] -->|turn| B[Front gear turns]\n"
        "    B -->|pulls| C[Bicycle chain moves]\n"
        "    C -->|spins| D[Back wheel turns]\n"
        "    D --> E[Bicycle rolls forward]\n",
    ),
)

_FENCE = re.compile(r"^\s*```(?:mermaid)?\s*\n?|\n?```\s*$")


class DiagramShaper:
    """Mermaid source streamed as ``diagram.partial``; ``done`` carries the structural check."""

    def __init__(self) -> None:
        self._parts: list[str] = []

    def feed(self, text: str, tokens: int) -> list[Event]:
        self._parts.append(text)
        return [("diagram.partial", {"text": text})]

    def result(self) -> BlockResult:
        source = "".join(self._parts)
        return BlockResult(block_type="diagram", text=source, diagram=_check(source))

    def finish(self) -> BlockResult:
        raw = _FENCE.sub("", "".join(self._parts))
        source = raw.strip()
        if not source:
            raise ProviderBadOutput("the model returned an empty diagram")
        check = _check(source)
        if not check.valid and not raw.endswith("\n") and "\n" in source:
            # Cut off mid-line by the token limit: the grammar guarantees every complete
            # line, so the diagram without its unfinished last line is the honest result.
            trimmed = source.rsplit("\n", 1)[0].rstrip()
            trimmed_check = _check(trimmed)
            if trimmed_check.valid:
                return BlockResult(block_type="diagram", text=trimmed, diagram=trimmed_check)
        return BlockResult(block_type="diagram", text=source, diagram=check)


def _check(source: str) -> DiagramCheck:
    valid, errors = check_mermaid(source)
    return DiagramCheck(valid=valid, errors=errors)


def scripted_diagram(request: BlockRequest) -> str:
    """Mermaid that parses, for the scripted provider."""
    from ..providers.scripted import safe_topic

    return (
        "flowchart TD\n"
        f"    A[{safe_topic(request.input)}] --> B[First idea]\n"
        "    B -->|leads to| C[Second idea]\n"
        "    C --> D[Summary]\n"
    )


DIAGRAM = Block(
    name="diagram",
    description="A Mermaid flowchart that explains a topic, checked before it is drawn",
    system_prompt=SYSTEM_PROMPT,
    shaper=lambda request: DiagramShaper(),
    result_model=BlockResult,
    events={"diagram.partial": DiagramPartialData},
    folds={"diagram.partial": Fold.TEXT},
    default_max_tokens=DIAGRAM_MAX_TOKENS,
    temperature=0.3,
    grammar=MERMAID_GBNF,
    examples=EXAMPLES,
    scripted=scripted_diagram,
    follow_ups={
        "more_detail": FollowUp(
            "More detail",
            "Draw the flowchart again with more detail: smaller steps and a few more nodes. The topic",
        )
    },
)
