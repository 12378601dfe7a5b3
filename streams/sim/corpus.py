"""The prompt corpus Warden ships (``corpus/*.json``, written for this project).

Ten domains (banking, cooking, healthcare, hr, insurance, legal, retail, software, telecom,
travel). Each domain file holds what a route of that domain sends and answers: system prompts
(``{brand}`` is a placeholder for a product name), ~50 distinct user prompts, retrieved
passages and answer sentences. Nothing here comes from ../shared or any public data set:
a user's clone has this and nothing else, and the tests read only this.

>>> sorted(load_domains()) == list(DOMAINS)
True
>>> len(prompt_variants("travel", 300)) == len(set(prompt_variants("travel", 300))) == 300
True
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
DOMAINS = ("banking", "cooking", "healthcare", "hr", "insurance", "legal", "retail", "software",
           "telecom", "travel")

# Wrappers users put around a request (a greeting, a thanks); the request stays the content.
OPENERS = ("", "hi, ", "hello! ", "quick question: ", "hey there, ", "sorry to bother you, ",
           "can you help? ")
CLOSERS = ("", " thanks!", " thank you", " please", " Thanks in advance.", " cheers")


@dataclass(frozen=True)
class Domain:
    """One topic's texts; ``prompts`` are distinct user requests."""

    name: str
    system_prompts: tuple[str, ...]
    prompts: tuple[str, ...]
    passages: tuple[str, ...]
    answers: tuple[str, ...]


@cache
def load_domains() -> dict[str, Domain]:
    """Every domain file of the shipped corpus, by domain name."""
    domains = {}
    for path in sorted(CORPUS_DIR.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        domains[doc["domain"]] = Domain(doc["domain"], tuple(doc["system_prompts"]),
                                        tuple(doc["prompts"]), tuple(doc["passages"]),
                                        tuple(doc["answers"]))
    if not domains:
        raise FileNotFoundError(f"no corpus files in {CORPUS_DIR}: the package data is missing")
    return domains


def prompt_variants(domain: str, n: int, seed: int = 0) -> list[str]:
    """``n`` distinct user messages of ``domain``: its prompts inside the openers and closers
    users wrap them in (``len(OPENERS) * len(CLOSERS)`` = 42 per prompt, ~2,100 per domain),
    in an order fixed by ``seed``."""
    prompts = load_domains()[domain].prompts
    texts = sorted({o + p + c for p in prompts for o in OPENERS for c in CLOSERS})
    if n > len(texts):
        raise ValueError(f"domain {domain!r} has {len(texts)} distinct messages, {n} were asked for")
    random.Random(f"{seed}/{domain}").shuffle(texts)
    return texts[:n]


def prompt_rows(per_domain: int, seed: int = 0) -> list[dict[str, str]]:
    """``{"prompt", "category"}`` rows (category: the domain name), ``per_domain`` of every
    domain, grouped by domain in name order."""
    return [{"prompt": text, "category": name} for name in sorted(load_domains())
            for text in prompt_variants(name, per_domain, seed)]
