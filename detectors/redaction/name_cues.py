"""Person names that the words around them announce: ``my name is``, ``on behalf of``, ``Dear``, ``Mr.``.

A statistical NER model misses names it has not seen in a context it has not seen
(spaCy's small English model finds ``Rajesh Kumar`` after ``I'm`` but not after ``on
behalf of``). Requests to an assistant announce names in a handful of fixed ways, so
this recognizer reads the announcement instead of the name:

* after an introduction or an address (``my name is``, ``I'm``, ``I am``, ``this is``,
  ``on behalf of``, ``signed``, ``regards,``, ``attn``, ``c/o``, ``patient``,
  ``customer``, ``employee``): two or three capitalised words;
* after ``Dear`` or a title (``Mr``, ``Mrs``, ``Ms``, ``Miss``, ``Mx``, ``Dr``,
  ``Prof``): one to three capitalised words.

Only the name is reported (``PERSON``), never the cue. Capitalised words that are not
names in such places (``Dear Customer``, ``I'm Happy``, ``on behalf of Acme Corp``) are
rejected by a short list and by company words. Priority 0, like the NER model's spans, so
any pattern finding that overlaps wins.

>>> rec = NameCueRecognizer()
>>> text = "I am writing on behalf of Rajesh Kumar, tenant since 2019. Dear Sir or Madam"
>>> [text[s.start:s.end] for s in rec.find(text)]
['Rajesh Kumar']
>>> text = "Please forward this to Dr. O'Neill today.\\nRegards,\\nMargaret Thompson"
>>> [text[s.start:s.end] for s in rec.find(text)]
["O'Neill", 'Margaret Thompson']
"""

from __future__ import annotations

import re

import re2

from .engine import Span

# A capitalised word of any script with case: an initial (``J.``) or a name word
# (``O'Neill``, ``Jean-Luc``, ``Müller``).
_WORD = r"(?:[^\W\d_a-z]\.|[^\W\d_a-z][^\W\d_]*(?:['’-][^\W\d_][^\W\d_]*)?)"
_INTRO = (r"my name is|my name's|i'm|i am|this is|on behalf of|signed(?: by)?|sincerely|"
          r"regards|attn|attention|c/o|patient|customer|employee|applicant|tenant|client")
_TITLE = r"(?:dear[ \t]+)?(?:mr|mrs|ms|miss|mx|dr|prof|professor)|dear"
# RE2 finds the cue words in one linear pass (Python's re tried the case-insensitive
# alternation at every position: 3x the cost of all the patterns on prompt text); the name
# after each cue is then read with Python's re, which has the Unicode word classes.
_CUE_WORDS = re2.compile(rf"(?i)\b(?:(?P<intro>{_INTRO})|(?P<title>{_TITLE}))\b")
_AFTER_INTRO = re.compile(rf"[:,]?(?:[ \t]+|[ \t]*\n[ \t]*)(?P<name>{_WORD}(?:[ \t]+{_WORD}){{0,2}})")
_AFTER_TITLE = re.compile(rf"\.?[ \t]+(?P<name>{_WORD}(?:[ \t]+{_WORD}){{0,2}})")
# Cues read per text: each costs a Python match (microseconds); a hostile message of nothing
# but "Dear Mr. " must not cost seconds. Real text holds a handful.
MAX_CUES = 2_000
# Capitalised words that follow such cues and are not names.
_NOT_NAMES = frozenset("""
sir madam madame customer customers team all everyone colleague colleagues friend friends
manager hiring support service sales admin administrator user users member members
partner partners client clients patient patients tenant tenants landlord applicant
valued happy glad sorry here there not very so just really also writing calling
contacting reaching looking trying going following using working available able
new old the a an this that these those my your our their his her its of for to and or
mother father mom dad son daughter brother sister wife husband boss doctor nurse
monday tuesday wednesday thursday friday saturday sunday today tomorrow yesterday
january february march april may june july august september october november december
english french german spanish american british
thanks thank thx please hope hi hello regarding re fyi asap
""".split())  # noqa: SIM905 - a word list reads better as text
_COMPANY = re.compile(
    r"\b(?:Inc|Corp|Corporation|LLC|Ltd|Limited|GmbH|AG|SA|PLC|Co|Company|Group|Holdings?|Bank"
    r"|Partners|Associates|Technolog(?:y|ies)|Systems|Solutions|Software|Labs?|Services"
    r"|University|College|School|Hospital|Clinic|Agency|Department|Ministry|Council)\b",
    re.IGNORECASE,
)


class NameCueRecognizer:
    """``PERSON`` spans for names announced by the words before them (no model, no I/O)."""

    name = "name_cues"
    entities: tuple[str, ...] = ("PERSON",)

    def find(self, text: str) -> list[Span]:
        if not text or text.islower():
            return []
        spans = []
        for n, cue in enumerate(_CUE_WORDS.finditer(text)):
            if n >= MAX_CUES:
                break
            titled = cue.group("title") is not None
            match = (_AFTER_TITLE if titled else _AFTER_INTRO).match(text, cue.end())
            if match is None:
                continue
            base = match.start("name")
            words = [(base + w.start(), base + w.end(), w.group())
                     for w in re.finditer(r"\S+", match.group("name"))]
            # Stop at the first word that is not a name ("Dear John Thanks" is "John").
            kept = []
            for word in words:
                bare = word[2].rstrip(".")
                if not bare[:1].isupper() or bare.lower() in _NOT_NAMES:
                    break
                kept.append(word)
            needed = 1 if titled else 2
            if len(kept) < needed or all(len(w[2]) <= 2 for w in kept):
                continue
            start, end = kept[0][0], kept[-1][1]
            if text[end - 1] == "." and len(kept[-1][2]) > 2:
                end -= 1  # a full stop after the name, not an initial
            if _COMPANY.search(text[start:end]):
                continue
            spans.append(Span("PERSON", start, end, 0.6, 0, self.name))
        return spans
