"""Template filling and tokenisation plans for the utility engine (docs/design.md §2).

Every scored sequence is `tokens(template) + [EOS] + tokens(response) + [EOS]`. With an example,
the template text splits at {prompt_i} into a prefix shared by every target of that example and a
per-target query part; `PromptPlan` holds those token lists so that the engine can run each prefix
once.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from delift_core.config import TemplateConfig

log = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"\{(prompt_i|prompt_j|response_j)\}")


class TextPair(Protocol):
    """What the engine needs of a record."""

    @property
    def prompt(self) -> str: ...

    @property
    def response(self) -> str: ...

    @property
    def hash(self) -> str: ...


def fill_template(template: str, **values: str) -> str:
    """Replace {prompt_i}, {prompt_j}, {response_j} in one pass (user text is never re-read)."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def no_example_text(template: TemplateConfig, target: TextPair) -> str:
    return fill_template(template.no_example, prompt_i=target.prompt)


def with_example_text(template: TemplateConfig, target: TextPair, example: TextPair) -> str:
    return fill_template(
        template.with_example,
        prompt_i=target.prompt,
        prompt_j=example.prompt,
        response_j=example.response,
    )


@dataclass(frozen=True)
class ClippedPair:
    """A record cut to the token caps of `clip_records`. Its hash is derived from the uncut
    record's and the caps, so that its scores never mix with the uncut record's in the cache."""

    prompt: str
    response: str
    hash: str


def clip_text(tokenizer: Any, text: str, max_tokens: int) -> str:
    """`text` cut after its first `max_tokens` tokens (no special tokens; a cut inside a word
    may re-encode to a token more or less); `text` itself when it is no longer."""
    # No tokenizer makes more than 4 tokens of one character (one per UTF-8 byte, at worst)
    # plus one word-start mark: shorter texts need no encoding.
    if 4 * len(text) + 1 <= max_tokens:
        return text
    fast = getattr(tokenizer, "is_fast", False)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=fast)
    ids = enc["input_ids"]
    if len(ids) <= max_tokens:
        return text
    if fast:  # cut the text itself, at the end of the last token kept
        return text[: enc["offset_mapping"][max_tokens - 1][1]]
    return tokenizer.decode(ids[:max_tokens])


def clip_records(
    tokenizer: Any,
    records: Sequence[TextPair],
    max_prompt_tokens: int,
    max_response_tokens: int,
) -> list[TextPair]:
    """The records with each prompt cut to `max_prompt_tokens` tokens and each response to
    `max_prompt_tokens + max_response_tokens` (an example's response is context in front of
    the target's prompt; the cut lies far beyond the `max_response_tokens` scored, so those
    stay as they were). Records within the caps are returned as they are."""
    out: list[TextPair] = []
    clipped = 0
    for record in records:
        prompt = clip_text(tokenizer, record.prompt, max_prompt_tokens)
        response = clip_text(tokenizer, record.response, max_prompt_tokens + max_response_tokens)
        if prompt == record.prompt and response == record.response:
            out.append(record)
            continue
        clipped += 1
        tag = f"{record.hash}|clip:p{max_prompt_tokens}:r{max_response_tokens}"
        out.append(ClippedPair(prompt, response, hashlib.sha256(tag.encode()).hexdigest()))
    if clipped:
        log.warning(
            "%d of %d records are longer than %d prompt tokens (or their answers than %d"
            " tokens) and are scored cut to that length",
            clipped, len(records), max_prompt_tokens, max_prompt_tokens + max_response_tokens,
        )  # fmt: skip
    return out


def _split_with_example(template: TemplateConfig) -> tuple[str, str]:
    head, _, tail = template.with_example.partition("{prompt_i}")
    return head, tail


@dataclass(frozen=True)
class PromptPlan:
    """Token ids for the engine.

    prefixes[j]: template head with example j; queries[i]: prompt_i plus the template tail;
    responses[i]: response_i (truncated to max tokens); baselines[i]: the no-example template.
    joined_examples / joined_targets: indices whose text does not split cleanly into
    prefix + query tokens; their pairs are tokenised whole instead.
    """

    prefixes: list[list[int]]
    queries: list[list[int]]
    responses: list[list[int]]
    baselines: list[list[int]]
    joined_examples: frozenset[int]
    joined_targets: frozenset[int]


def plan_prompts(
    encode: Callable[[str], list[int]],
    template: TemplateConfig,
    targets: Sequence[TextPair],
    examples: Sequence[TextPair],
    max_response_tokens: int,
) -> PromptPlan:
    """Tokenise every piece once and check that the prefix/query split is lossless."""
    head, tail = _split_with_example(template)
    prefix_texts = [fill_template(head, prompt_j=e.prompt, response_j=e.response) for e in examples]
    query_texts = [t.prompt + tail for t in targets]
    prefixes = [encode(text) for text in prefix_texts]
    queries = [encode(text) for text in query_texts]
    responses = [encode(t.response)[:max_response_tokens] for t in targets]
    baselines = [encode(no_example_text(template, t)) for t in targets]
    joined_examples: set[int] = set()
    joined_targets: set[int] = set()
    if targets and examples:
        # A BPE merge across the boundary would make split tokens differ from whole-string
        # tokens. Check every example against one query and every query against one example;
        # the boundary is a fixed template text, so a clean split there holds for all pairs.
        for j, text in enumerate(prefix_texts):
            if encode(text + query_texts[0]) != prefixes[j] + queries[0]:
                joined_examples.add(j)
        for i, text in enumerate(query_texts):
            if encode(prefix_texts[0] + text) != prefixes[0] + queries[i]:
                joined_targets.add(i)
    if joined_examples or joined_targets:
        log.warning(
            "%d examples and %d targets do not split cleanly at the template boundary; "
            "their pairs are tokenised whole (slower, same values)",
            len(joined_examples),
            len(joined_targets),
        )
    return PromptPlan(
        prefixes,
        queries,
        responses,
        baselines,
        frozenset(joined_examples),
        frozenset(joined_targets),
    )
