"""The GQR unified prompt template, versioned, and the per-suggestion KTO factorization.

Template (`TEMPLATE_VERSION`), after GQR §3.1 "Prompt Template for Query Recommendation":
an instruction, then the inputs — the user query (required) and the side information: the
assistant's response, recent session queries, the context and the retrieved tools — then
the response: N suggestions, one per line, each line `- <query>`, i.e. the delimiter
between suggestions is `SUGGESTION_SEP` ("\\n") and each starts with `SUGGESTION_PREFIX`.
GQR's optional auxiliary texts T are not used. It is written in ChatML (the chat format
of SmolLM2 and of the tiny test model) as a plain string, so the rendered prompt stored in
an impression is exactly what the model saw, whatever checkpoint later reads it.

Delimiters user text can never break: every piece of user- or catalog-supplied text goes
through `clean_text`, which folds it onto one line (so it cannot start a new input section
or forge a `- ` suggestion line) and takes apart chat markers (`<|`, `|>`), so no
`<|im_end|>` can be injected. Optional inputs that are empty are left out.

Factorization (DESIGN.md §3): a list `[q1, …, qN]` is generated as
`prompt + format_completion(q1) + … + format_completion(qN) + END_OF_TURN`, so the sample of
the k-th shown suggestion has `prompt = sample_prompt(rendered, [q1 … q(k-1)])` and
`completion = format_completion(qk)`. The streaming stage, the SFT data and the KTO trainer
all use these two functions. Note for KTO: TRL appends the EOS token to non-conversational
completions; a per-suggestion completion must not end the turn, so the trainer has to keep
TRL from appending it (the full list still ends with `END_OF_TURN`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from generator.config import GeneratorConfig
from toolrec.errors import ValidationError

__all__ = [
    "END_OF_TURN",
    "SUGGESTION_PREFIX",
    "SUGGESTION_SEP",
    "TEMPLATE_VERSION",
    "PromptInputs",
    "PromptTool",
    "clean_text",
    "completion_text",
    "format_completion",
    "format_response",
    "parse_prompt",
    "prompt_tools",
    "render_prompt",
    "sample_prompt",
    "tool_label",
]

TEMPLATE_VERSION = "gqr-chatml-v2"  # v2: shorter instruction (39 instead of 69 tokens)
SUGGESTION_PREFIX = "- "
SUGGESTION_SEP = "\n"
END_OF_TURN = "<|im_end|>"

INSTRUCTION = (
    "Suggest {n} short follow-up queries the user is likely to tap next, one per line, each "
    'starting with "- ". Prefer what a listed tool can do; never repeat the query.'
)

_WHITESPACE = re.compile(r"\s+")
_MARKER_PARTS = ("<|", "|>")
_MARKER = re.compile("|".join(map(re.escape, _MARKER_PARTS)))  # any of them, one C call


@dataclass(frozen=True)
class PromptTool:
    """A retrieved tool as shown in the prompt (side information)."""

    tool_id: str
    name: str
    description: str = ""
    example: str = ""


@dataclass(frozen=True)
class PromptInputs:
    """What the generator is asked about: one recommend request."""

    query: str
    response: str = ""
    recent: tuple[str, ...] = ()
    tools: tuple[PromptTool, ...] = ()
    context: Mapping[str, Any] = field(default_factory=dict)


def clean_text(text: object, max_chars: int | None = None) -> str:
    """`text` made safe to place inside the template: one line, no chat markers, bounded.

    NFKC first, so full-width look-alikes of `<`, `|` and `>` are taken apart too.
    """
    value = str(text)
    if not _is_clean(value):
        value = _folded(value)
    if max_chars is not None and len(value) > max_chars:
        value = value[:max_chars].rstrip() + "…"
    return value


def _is_clean(value: str) -> bool:
    """True when `_folded` would return `value` unchanged, checked without building
    anything (the stream worker cleans every shown suggestion, issue 12): printable ASCII
    (NFKC-stable, its only whitespace is " "), no run of spaces, nothing to strip, no
    chat-marker part."""
    return (value.isascii() and value.isprintable() and "  " not in value
            and value[:1] != " " and value[-1:] != " "
            and "<|" not in value and "|>" not in value)  # `_MARKER_PARTS`, without the regex


def _folded(value: str) -> str:
    """`value` on one line (NFKC unless printable ASCII, controls as spaces, whitespace
    runs as one space, stripped), chat markers taken apart."""
    if not (value.isascii() and value.isprintable()):  # printable ASCII: NFKC-stable, no Cc
        value = unicodedata.normalize("NFKC", value)
        value = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in value)
    value = _WHITESPACE.sub(" ", value).strip()
    while _MARKER.search(value):
        value = value.replace("<|", "<").replace("|>", ">")
    return value


def prompt_tools(items: Iterable[Any]) -> tuple[PromptTool, ...]:
    """PromptTools from retrieval's `ToolHit`s (which carry `.tool`) or catalog `Tool`s."""
    tools = []
    for item in items:
        tool = getattr(item, "tool", None) or item
        examples = list(getattr(tool, "examples", None) or [])
        tools.append(
            PromptTool(
                tool_id=str(tool.id),
                name=str(getattr(tool, "name", "") or tool.id),
                description=str(getattr(tool, "description", "") or ""),
                example=str(examples[0]) if examples else "",
            )
        )
    return tuple(tools)


def tool_label(name: str) -> str:
    """A tool's name as a prompt shows it (what `parse_prompt` reads back)."""
    return clean_text(name, 60)


def _tool_line(tool: PromptTool) -> str:
    detail = tool.example or tool.description
    name = tool_label(tool.name)
    return f"* {name}: {clean_text(detail, 100)}" if detail else f"* {name}"


def _context_value(value: object) -> str:
    """Device-context values as words (`DeviceContext` booleans read as yes / no)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return clean_text(value, 80)


def _section(title: str, lines: Sequence[str]) -> str:
    return f"{title}:\n" + "".join(f"{line}\n" for line in lines) if lines else ""


def render_prompt(inputs: PromptInputs, n: int, config: GeneratorConfig | None = None) -> str:
    """The rendered prompt of `TEMPLATE_VERSION`, ending where the model starts its list."""
    config = config or GeneratorConfig()
    if n < 1:
        raise ValidationError("n", "invalid_n", f"must ask for at least 1 suggestion, got {n}")
    query = clean_text(inputs.query, config.max_query_chars)
    response = clean_text(inputs.response, config.max_response_chars)
    user = f"Query: {query}\n"
    if response:
        user += f"Response: {response}\n"
    recent = [clean_text(q, config.max_query_chars) for q in inputs.recent[-config.max_recent :]]
    user += _section("Recent queries", [f"* {q}" for q in recent if q] if config.max_recent else [])
    context = [
        f"* {clean_text(k, 40)}: {_context_value(v)}"
        for k, v in inputs.context.items()
        if v is not None and str(v) != ""
    ]
    user += _section("Context", context)
    user += _section("Tools", [_tool_line(t) for t in inputs.tools[: config.max_tools]])
    return (
        f"<|im_start|>system\n{INSTRUCTION.format(n=n)}{END_OF_TURN}\n"
        f"<|im_start|>user\n{user}{END_OF_TURN}\n"
        "<|im_start|>assistant\n"
    )


@dataclass(frozen=True)
class RenderedPrompt:
    """What `parse_prompt` reads back from a rendered prompt: its pieces as rendered (cleaned,
    possibly truncated), enough to judge a list written for it (the refresh's reward
    objective reads stored prompts, `trainer.listwise`)."""

    n: int
    query: str
    response: str = ""
    recent: tuple[str, ...] = ()
    tool_names: tuple[str, ...] = ()  # in the prompt's order, as `_tool_line` wrote them

    def inputs(self) -> PromptInputs:
        """What the suggestion parser checks a list against (the query, the recent ones)."""
        return PromptInputs(query=self.query, response=self.response, recent=self.recent)


_RENDERED = re.compile(
    r"<\|im_start\|>system\nSuggest (?P<n>[0-9]+) short [^\n]*" + re.escape(END_OF_TURN)
    + r"\n<\|im_start\|>user\n(?P<user>.*)" + re.escape(END_OF_TURN)
    + r"\n<\|im_start\|>assistant\n", re.DOTALL)
_SECTIONS = {"Recent queries:": "recent", "Context:": "context", "Tools:": "tools"}


def parse_prompt(rendered: str) -> RenderedPrompt:
    """The inverse of `render_prompt` for what a reader of stored prompts needs. Every piece
    went through `clean_text` (one line, no chat markers), so lines and markers split it
    unambiguously. Raises `ValidationError` for a prompt of another template."""
    match = _RENDERED.fullmatch(rendered)
    if match is None:
        raise ValidationError("prompt", "unknown_template",
                              f"not a rendered {TEMPLATE_VERSION} prompt")
    fields: dict[str, str] = {}
    lists: dict[str, list[str]] = {"recent": [], "context": [], "tools": []}
    section = ""
    for line in match["user"].splitlines():
        if line in _SECTIONS:
            section = _SECTIONS[line]
        elif line.startswith("* ") and section:
            lists[section].append(line[2:])
        elif not section and line.startswith(("Query: ", "Response: ")):
            key, _, value = line.partition(": ")
            fields[key] = value
        else:
            raise ValidationError("prompt", "unknown_template",
                                  f"unexpected line in a {TEMPLATE_VERSION} prompt: {line[:40]!r}")
    if "Query" not in fields:
        raise ValidationError("prompt", "unknown_template", "the prompt has no query")
    # a tool line is "* name: detail" or "* name"; names are catalog names (no ": ")
    names = tuple(line.partition(": ")[0] for line in lists["tools"])
    return RenderedPrompt(n=int(match["n"]), query=fields["Query"],
                          response=fields.get("Response", ""), recent=tuple(lists["recent"]),
                          tool_names=names)


def format_completion(text: str) -> str:
    """One suggestion as the model writes it: its line, delimiter included."""
    return f"{SUGGESTION_PREFIX}{clean_text(text)}{SUGGESTION_SEP}"


def completion_text(completion: str) -> str:
    """The suggestion of a `format_completion` line (a stored sample's completion)."""
    return completion.removeprefix(SUGGESTION_PREFIX).removesuffix(SUGGESTION_SEP)


def sample_prompt(rendered_prompt: str, shown_before: Sequence[str]) -> str:
    """The KTO prompt of a shown suggestion: the rendered prompt + the suggestions above it."""
    return rendered_prompt + "".join(format_completion(s) for s in shown_before)


def format_response(suggestions: Sequence[str]) -> str:
    """A whole response (SFT target): every suggestion's line, then the end of the turn."""
    return sample_prompt("", suggestions) + END_OF_TURN
