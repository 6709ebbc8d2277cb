"""The matching engine: compile watchlists once, then match items. Pure: no I/O.

``compile_watchlists`` folds every term (rule terms, context, exclusions, regex anchors)
of every watchlist into one Aho-Corasick automaton. Matching an item folds each field
once and scans it once for the keys that occur on word boundaries; only the entries one
of whose terms was found, and none of whose needed terms is missing (a near operand, a
part of an all-group), are then verified (boolean groups, proximity, context,
exclusions, case, regexes), and only then are the hits' spans worked out (a second scan
of the fields of such items). Regexes without an ``anchor`` are verified on every item,
since nothing tells us cheaply when they might match.

A term with ``forms`` is looked for by a prefix of its first word (open at the right);
each word found so, and the words after it, are then checked against the term's words
with :mod:`monitor.morph`. A term with ``translit`` is compiled as one term per spelling
(:mod:`monitor.translit`). Still one scan per field.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Union

import ahocorasick

from monitor import morph, translit
from monitor.fold import Folded, fold, fold_text
from monitor.models import ITEM_FIELDS, Item, Match, Span
from monitor.watchlists import Context, Group, Near, Rule, Term, Watchlist

_WORD = re.compile(r"[^\W_]+")
_ASCII_NON_WORD = [c for c in map(chr, range(128)) if not c.isalnum() and c != " "]
_OTHER_NON_WORD = re.compile(r"[^\w\x00-\x7f]+")
_NEXT_WORD = re.compile(r"[ -]{1,2}([^\W_]+)")
_SECOND = itemgetter(1)


def _scan_form(text: str) -> str:
    """``text`` with every character that is not a letter or digit made a space."""
    for ch in _ASCII_NON_WORD:
        if ch in text:
            text = text.replace(ch, " ")
    if not text.isascii():
        text = _OTHER_NON_WORD.sub(lambda m: " " * len(m.group()), text)
    return text


#: The words of a term with forms, the index of the one the automaton finds, its entries.
_FormsGroup = tuple[tuple[morph.WordForms, ...], int, tuple[int, ...]]

#: A found occurrence: field, start and end in the ORIGINAL text, the term as written.
_Hit = tuple[str, int, int, str]


@dataclass(eq=False, slots=True)
class _CTerm:
    index: int
    key: int
    shown: str  # as written, for Match.terms
    cased: str | None  # folded but not casefolded text, for case-sensitive terms
    exclude: tuple[_CTerm, ...] = ()
    context: _CContext | None = None
    fields: tuple[str, ...] = ITEM_FIELDS
    words: tuple[morph.WordForms, ...] = ()  # forms: the term's words, checked in order
    anchor: int = 0  # forms: the word the automaton looks for


@dataclass(eq=False, slots=True)
class _CContext:
    terms: tuple[_CTerm, ...]
    window: int | str


@dataclass(eq=False, slots=True)
class _CGroup:
    op: str
    children: tuple[_CRule, ...]


@dataclass(eq=False, slots=True)
class _CNear:
    operands: tuple[tuple[_CTerm, ...], ...]
    window: int


@dataclass(eq=False, slots=True)
class _CRegex:
    regex: re.Pattern[str]
    shown: str
    anchor: int | None  # key of the anchor literal
    case_sensitive: bool


_CRule = Union[_CTerm, _CGroup, _CNear, _CRegex]  # noqa: UP007


@dataclass(eq=False, slots=True)
class _CEntry:
    watchlist: int
    watchlist_id: str
    entry_id: str
    rule: _CRule
    fields: tuple[str, ...]
    languages: tuple[str, ...] = ()


@dataclass(eq=False, slots=True)
class _FieldScan:
    """One field of an item: its folded text, the keys whose scan form occurs in it, and
    (worked out on first use, as most items are never verified) their hits."""

    original: str
    folded: Folded
    #: Keys whose scan form occurs in the field: their hits, still to be confirmed (a key
    #: with punctuation may have none), are a subset.
    maybe: frozenset[int]
    _matcher: Matcher
    _hits: dict[int, list[tuple[int, int]]] | None = None
    _cased: Folded | None = None

    @property
    def hits(self) -> dict[int, list[tuple[int, int]]]:
        """{key: [(start, end), ...]} of the keys found (see :meth:`Matcher._scan`)."""
        if self._hits is None:
            self._hits = self._matcher._scan(self.folded.text)
        return self._hits

    def occ(self, key: int) -> list[tuple[int, int]] | None:
        """The hits of ``key``, None if it was not found."""
        return self.hits.get(key) if key in self.maybe else None

    def cased(self) -> Folded:
        if self._cased is None:
            self._cased = self.folded.cased_view() or fold(self.original, casefold=False)
        return self._cased


@dataclass(eq=False, slots=True)
class _ItemState:
    scans: dict[str, _FieldScan]
    occ: dict[tuple[int, str], list[tuple[int, int]]] = field(default_factory=dict)
    #: A context's occurrences in a field, for _in_context: (by start, starts, the one
    #: ending last among the first k for each k).
    near: dict[tuple[int, str], _Near] = field(default_factory=dict)
    # extents of forms terms found while choosing candidates: (words, anchor, field)
    formed: dict[tuple[tuple[morph.WordForms, ...], int, str], list[tuple[int, int]]] = field(
        default_factory=dict
    )


_Near = tuple[list[tuple[int, int]], list[int], list[tuple[int, int]]]


class _Key:
    """One literal the automaton looks for, and how to confirm a hit on the folded text."""

    __slots__ = ("exact", "lpad", "prefix", "scan", "size")

    def __init__(self, text: str, *, prefix: bool, substring: bool) -> None:
        left = not substring and text[0].isalnum()
        right = not substring and not prefix and text[-1].isalnum()
        form = _scan_form(text)
        self.scan = (" " if left else "") + form + (" " if right else "")
        self.lpad = 1 if left else 0
        self.size = len(text)
        self.exact = None if form == text else text  # punctuation or spaces: compare
        self.prefix = prefix


class _Compiler:
    def __init__(self) -> None:
        self.keys: dict[tuple[str, bool, bool], int] = {}
        self.key_info: list[_Key] = []
        self.terms: list[_CTerm] = []
        self.wordforms: dict[tuple[str, tuple[str, ...], bool], morph.WordForms] = {}

    def word_forms(self, word: str, languages: tuple[str, ...], proper: bool) -> morph.WordForms:
        """One shared checker (and cache) per distinct term word."""
        ident = (word, languages, proper)
        found = self.wordforms.get(ident)
        if found is None:
            found = self.wordforms[ident] = morph.WordForms(word, languages, proper=proper)
        return found

    def key(self, text: str, *, prefix: bool = False, substring: bool = False) -> int:
        ident = (text, prefix, substring)
        if ident not in self.keys:
            self.keys[ident] = len(self.key_info)
            self.key_info.append(_Key(text, prefix=prefix, substring=substring))
        return self.keys[ident]

    def spellings(self, term: Term, fields: tuple[str, ...]) -> list[_CTerm]:
        """One compiled term per spelling (several with ``translit``)."""
        if not term.translit:
            return [self.term(term, term.text, fields)]
        return [self.term(term, text, fields) for text in translit.variants(term.text)]

    def many(self, terms: Sequence[Term], fields: tuple[str, ...]) -> tuple[_CTerm, ...]:
        return tuple(c for t in terms for c in self.spellings(t, fields))

    def term(self, term: Term, text: str, fields: tuple[str, ...]) -> _CTerm:
        folded = fold_text(text)
        cased = fold_text(text, casefold=False) if term.case_sensitive else None
        words: tuple[morph.WordForms, ...] = ()
        if term.forms and not term.prefix:
            written = _WORD.findall(fold_text(text, casefold=False))
            words = tuple(
                self.word_forms(w, morph.languages_for(w, term.lang), c[:1].isupper())
                for w, c in zip(_WORD.findall(folded), written, strict=False)
            )
            if not any(w.languages for w in words):
                words = ()
        anchor = 0
        if words:
            # the automaton looks for the longest word's prefix; the others are checked
            anchor = max(range(len(words)), key=lambda i: len(words[i].prefix))
            key = self.key(words[anchor].prefix, prefix=True)
            cased = cased[:1] if cased is not None else None  # the capital letter
        else:
            key = self.key(folded, prefix=term.prefix)
        cterm = _CTerm(
            index=len(self.terms),
            key=key,
            shown=term.text + ("*" if term.prefix else ""),
            cased=cased,
            fields=fields,
            words=words,
            anchor=anchor,
        )
        self.terms.append(cterm)
        cterm.exclude = self.many(term.exclude, fields)
        if term.context is not None:
            cterm.context = self.context(term.context, fields)
        return cterm

    def context(self, context: Context, fields: tuple[str, ...]) -> _CContext:
        return _CContext(self.many(context.terms, fields), context.window)

    def rule(self, rule: Rule, fields: tuple[str, ...]) -> _CRule:
        if isinstance(rule, Term):
            compiled = self.spellings(rule, fields)
            return compiled[0] if len(compiled) == 1 else _CGroup("any", tuple(compiled))
        if isinstance(rule, Group):
            return _CGroup(rule.op, tuple(self.rule(child, fields) for child in rule.children))
        if isinstance(rule, Near):
            ops = tuple(self.many(op, fields) for op in rule.operands)
            return _CNear(ops, rule.window)
        flags = 0 if rule.case_sensitive else re.IGNORECASE
        anchor = None
        if rule.anchor is not None:
            anchor = self.key(fold_text(rule.anchor), substring=True)
        return _CRegex(re.compile(rule.pattern, flags), rule.pattern, anchor, rule.case_sensitive)


def _required_keys(rule: _CRule) -> Iterator[frozenset[int]]:
    """Sets of keys such that ``rule`` cannot hold unless one key of each set was found in
    the item: a cheap test that spares verifying most candidates (an entry is a candidate
    as soon as any one of its terms is found, as a country's name in a rule that also
    needs a rare phrase)."""
    if isinstance(rule, _CTerm):
        yield frozenset([rule.key])
    elif isinstance(rule, _CNear):  # every operand in one field
        for op in rule.operands:
            yield frozenset(term.key for term in op)
    elif isinstance(rule, _CRegex):
        if rule.anchor is not None:
            yield frozenset([rule.anchor])
    elif rule.op == "all":
        for child in rule.children:
            yield from _required_keys(child)
    elif rule.op == "any":  # one child must hold: one key of one of their first sets
        firsts = [next(_required_keys(child), None) for child in rule.children]
        if all(first is not None for first in firsts):
            yield frozenset().union(*(first for first in firsts if first is not None))
    # "not" holds when its children do not: it needs nothing found


def _trigger_keys(rule: _CRule) -> Iterator[int | _CTerm | None]:
    """Keys of the positive terms (None: an unanchored regex, so always verify; a term
    with word forms: its key, once the word found there is one of its forms)."""
    if isinstance(rule, _CTerm):
        yield rule if rule.words else rule.key
    elif isinstance(rule, _CGroup):
        if rule.op != "not":
            for child in rule.children:
                yield from _trigger_keys(child)
    elif isinstance(rule, _CNear):
        for op in rule.operands:
            for term in op:
                yield term if term.words else term.key
    else:
        yield rule.anchor


class Matcher:
    """Compiled watchlists. Build with :func:`compile_watchlists`; ``match`` is pure."""

    def __init__(self, watchlists: Sequence[Watchlist]) -> None:
        comp = _Compiler()
        self._entries: list[_CEntry] = []
        self._exclude_if: list[tuple[_CTerm, ...]] = []
        self.watchlist_ids: tuple[str, ...] = tuple(w.id for w in watchlists)
        for wl_index, watchlist in enumerate(watchlists):
            self._exclude_if.append(comp.many(watchlist.exclude_if, ITEM_FIELDS))
            for entry in watchlist.entries:
                rule = comp.rule(entry.rule, entry.fields)
                self._entries.append(
                    _CEntry(
                        wl_index, watchlist.id, entry.id, rule, entry.fields, watchlist.languages
                    )
                )
        triggers: list[set[int]] = [set() for _ in comp.key_info]
        forms_triggers: dict[int, dict[tuple[tuple[morph.WordForms, ...], int], set[int]]] = {}
        always: set[int] = set()
        for index, compiled in enumerate(self._entries):
            for key in _trigger_keys(compiled.rule):
                if isinstance(key, _CTerm):
                    by_words = forms_triggers.setdefault(key.key, {})
                    by_words.setdefault((key.words, key.anchor), set()).add(index)
                else:
                    (always if key is None else triggers[key]).add(index)
        self._triggers = [tuple(sorted(t)) for t in triggers]
        # key -> [(anchor word, [(the words and anchor of a forms term, its entries)])]
        self._forms_triggers: dict[int, list[tuple[morph.WordForms, list[_FormsGroup]]]] = {}
        for key, by_words in forms_triggers.items():
            by_anchor: dict[morph.WordForms, list[_FormsGroup]] = {}
            for (words, anchor), entries in by_words.items():
                group = (words, anchor, tuple(sorted(entries)))
                by_anchor.setdefault(words[anchor], []).append(group)
            self._forms_triggers[key] = list(by_anchor.items())
        self._always = frozenset(always)
        self._required = [tuple(_required_keys(e.rule)) for e in self._entries]
        used = {f for e in self._entries for f in e.fields}
        self._fields = tuple(f for f in ITEM_FIELDS if f in used)
        by_scan: dict[str, list[int]] = {}
        for key, info in enumerate(comp.key_info):
            by_scan.setdefault(info.scan, []).append(key)
        self._automaton = ahocorasick.Automaton()
        # The automaton gives the index of the scan string found; for each, its keys with
        # what turns the end of a hit into the key's span: (key, start back from the
        # padded end, size, exact text or None, prefix).
        self._scan_keys: list[tuple[tuple[int, int, int, str | None, bool], ...]] = []
        for scan, keys in by_scan.items():
            self._automaton.add_word(scan, len(self._scan_keys))
            self._scan_keys.append(
                tuple(
                    (key, len(scan) - k.lpad, k.size, k.exact, k.prefix)
                    for key in keys
                    for k in (comp.key_info[key],)
                )
            )
        self._value_keys = [tuple(k[0] for k in keys) for keys in self._scan_keys]
        if by_scan:
            self._automaton.make_automaton()
        self._empty = not by_scan
        self.term_count = len(comp.terms)
        self.key_count = len(comp.key_info)

    @property
    def entry_count(self) -> int:
        return len(self._entries)

    # - scanning -

    def _scan(self, text: str) -> dict[int, list[tuple[int, int]]]:
        """Occurrences of every key on word boundaries: {key: [(start, end), ...]}.

        The automaton runs over a copy of the folded text in which every character that is
        not a letter or digit is a space, padded with a space at each end; keys that need a
        word boundary carry a space there. So only whole-word hits come out, and a hit of a
        key with punctuation in it is confirmed against the folded text itself.
        """
        hits: dict[int, list[tuple[int, int]]] = {}
        if self._empty:
            return hits
        n = len(text)
        for last, found in self._automaton.iter(" " + _scan_form(text) + " "):
            for key, back, size, exact, prefix in self._scan_keys[found]:
                start = last - back  # the padded text's end index less ``back``
                end = start + size
                if exact is not None and text[start:end] != exact:
                    continue
                if prefix:
                    while end < n and text[end].isalnum():
                        end += 1
                spans = hits.get(key)
                if spans is None:
                    hits[key] = [(start, end)]
                else:
                    spans.append((start, end))
        return hits

    def _present(self, text: str) -> frozenset[int]:
        """The keys whose scan form occurs in the folded ``text``: what :meth:`_scan`
        finds, and the keys with punctuation whose hits it would drop. Worked out without
        a Python step per hit."""
        if self._empty:
            return frozenset()
        found = set(map(_SECOND, self._automaton.iter(" " + _scan_form(text) + " ")))
        return frozenset(chain.from_iterable(map(self._value_keys.__getitem__, found)))

    def match(self, item: Item) -> list[Match]:
        """The matches of one item: at most one per (watchlist, entry), in watchlist order."""
        return self.match_fields(
            {name: item.field_text(name) for name in ITEM_FIELDS}, lang=item.lang
        )

    def match_fields(self, fields: Mapping[str, str], lang: str | None = None) -> list[Match]:
        """Like :meth:`match`, for a mapping of field name to plain text.

        ``lang``: the item's language, if known; a watchlist restricted to ``languages``
        skips items known to be in another one.
        """
        scans: dict[str, _FieldScan] = {}
        candidates = set(self._always)
        formed: dict[tuple[tuple[morph.WordForms, ...], int, str], list[tuple[int, int]]] = {}
        for name in self._fields:
            text = fields.get(name) or ""
            if not text:
                continue
            folded = fold(text)
            maybe = self._present(folded.text)
            scan = scans[name] = _FieldScan(text, folded, maybe, self)
            candidates.update(chain.from_iterable(map(self._triggers.__getitem__, maybe)))
            forms = self._forms_triggers
            for key in maybe.intersection(forms):
                # entries with a term whose words are there, in forms
                occ = scan.hits.get(key)
                if occ is None:
                    continue
                text = folded.text
                for wf, groups in forms[key]:
                    good = [o for o in occ if wf.accepts(text[o[0] : o[1]])]
                    if not good:
                        continue
                    for words, anchor, entries in groups:
                        extents = good if len(words) == 1 else _forms(words, anchor, text, good)
                        formed[words, anchor, name] = extents
                        if extents:
                            candidates.update(entries)
        if not candidates:
            return []
        # the keys that may have been found: enough to rule out what needs others
        found_keys = frozenset().union(*(scan.maybe for scan in scans.values()))
        state = _ItemState(scans, formed=formed)
        vetoed: dict[int, bool] = {}
        matches: list[Match] = []
        for index in sorted(candidates):
            entry = self._entries[index]
            if lang is not None and entry.languages and not language_allowed(lang, entry.languages):
                continue
            if any(keys.isdisjoint(found_keys) for keys in self._required[index]):
                continue  # a term the rule cannot hold without was found nowhere
            found = _evaluate(entry.rule, entry.fields, state)
            if not found:
                continue
            wl = entry.watchlist
            if wl not in vetoed:
                vetoed[wl] = any(
                    _occurrences(t, f, state) for t in self._exclude_if[wl] for f in scans
                )
            if not vetoed[wl]:
                matches.append(_make_match(entry, found, scans))
        return matches


def compile_watchlists(watchlists: Sequence[Watchlist]) -> Matcher:
    """Compile once; match many times."""
    return Matcher(watchlists)


def language_allowed(lang: str, allowed: Sequence[str]) -> bool:
    """``lang`` ("uz-Latn") is one of ``allowed`` ("uz", "uz-Latn", "ru", ...)."""
    base, _, script = lang.partition("-")
    for tag in allowed:
        tag_base, _, tag_script = tag.partition("-")
        if tag_base == base and (not script or not tag_script or script == tag_script):
            return True
    return False


# - verification --------------------------------------------------------------------------


def _occurrences(term: _CTerm, name: str, state: _ItemState) -> list[tuple[int, int]]:
    """Valid occurrences of one term in one field: case, exclusions, context applied."""
    scan = state.scans.get(name)
    occ = scan.occ(term.key) if scan is not None else None
    if occ is None or scan is None:
        return []
    if term.cased is None and not term.exclude and term.context is None and not term.words:
        return occ  # a plain term: every word-boundary hit counts
    cache_key = (term.index, name)
    cached = state.occ.get(cache_key)
    if cached is not None:
        return cached
    if occ:
        if term.words:
            known = state.formed.get((term.words, term.anchor, name))
            occ = (
                known
                if known is not None
                else _forms(term.words, term.anchor, scan.folded.text, occ)
            )
        if term.cased is not None and occ:
            occ = [o for o in occ if _case_ok(scan, o, term.cased)]
        if term.exclude and occ:
            cancel = [x for t in term.exclude for x in _occurrences(t, name, state)]
            occ = [o for o in occ if not any(x0 < o[1] and o[0] < x1 for x0, x1 in cancel)]
        if term.context is not None and occ:
            occ = [o for o in occ if _in_context(o, name, term.context, term.fields, state)]
    state.occ[cache_key] = occ
    return occ


def _forms(
    words: tuple[morph.WordForms, ...], anchor: int, text: str, occ: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The occurrences (of the anchor word) whose words are forms of the term's words,
    extended over the words before and after it."""
    out: list[tuple[int, int]] = []
    for start, end in occ:
        if not words[anchor].accepts(text[start:end]):
            continue
        pos = end
        for wf in words[anchor + 1 :]:
            m = _NEXT_WORD.match(text, pos)
            if m is None or not wf.accepts(m.group(1)):
                break
            pos = m.end()
        else:
            first = start
            for wf in reversed(words[:anchor]):
                stop = first  # back over one or two spaces or hyphens, then a word
                while stop > 0 and first - stop < 2 and text[stop - 1] in " -":
                    stop -= 1
                begin = stop
                while begin > 0 and text[begin - 1].isalnum():
                    begin -= 1
                if stop == first or begin == stop or not wf.accepts(text[begin:stop]):
                    break
                first = begin
            else:
                out.append((first, pos))
    return out


def _case_ok(scan: _FieldScan, occ: tuple[int, int], cased: str) -> bool:
    start, end = occ
    view = scan.folded.cased
    if view is not None:
        return view[start : start + len(cased)] == cased
    o_start, o_end = scan.folded.to_original(start, end)
    return fold(scan.original[o_start:o_end], casefold=False).text.startswith(cased)


def _gap_within(text: str, a: tuple[int, int], b: tuple[int, int], window: int) -> bool:
    """At most ``window`` words stand between occurrences ``a`` and ``b``."""
    if a[0] < b[1] and b[0] < a[1]:
        return True
    stop, start = (a[1], b[0]) if a[0] < b[0] else (b[1], a[0])
    return all(count <= window for count, _ in enumerate(_WORD.finditer(text, stop, start), 1))


def _in_context(
    occ: tuple[int, int],
    name: str,
    context: _CContext,
    fields: tuple[str, ...],
    state: _ItemState,
) -> bool:
    window = context.window
    if window == "item":
        return any(_occurrences(t, f, state) for t in context.terms for f in fields)
    key = (id(context), name)
    cached = state.near.get(key)
    if cached is None:
        spans = sorted({c for t in context.terms for c in _occurrences(t, name, state)})
        last: list[tuple[int, int]] = []
        for span in spans:
            last.append(span if not last or span[1] > last[-1][1] else last[-1])
        cached = state.near[key] = (spans, [c[0] for c in spans], last)
    spans, starts, last = cached
    if window == "field" or not spans:
        return bool(spans)
    # Fewer words stand between closer occurrences, so only the nearest on each side can
    # be within the window: checking those is enough (an item repeating a term thousands
    # of times must not cost thousands squared).
    text = state.scans[name].folded.text
    before = bisect.bisect_left(starts, occ[1])  # spans[:before] start before occ ends
    candidates = [last[before - 1]] if before else []
    if before < len(spans):
        candidates.append(spans[before])
    return any(_gap_within(text, occ, c, int(window)) for c in candidates)


def _evaluate(rule: _CRule, fields: tuple[str, ...], state: _ItemState) -> list[_Hit] | None:
    """None when the rule does not hold; else the hits that make it hold (maybe none)."""
    if isinstance(rule, _CTerm):
        hits: list[_Hit] = []
        for name in fields:
            scan = state.scans.get(name)
            if scan is None or scan.occ(rule.key) is None:
                continue
            to_original = scan.folded.to_original
            hits.extend(
                (name, *to_original(*o), rule.shown) for o in _occurrences(rule, name, state)
            )
        return hits or None
    if isinstance(rule, _CGroup):
        out: list[_Hit] = []
        if rule.op == "all":
            for child in rule.children:
                found = _evaluate(child, fields, state)
                if found is None:
                    return None
                out.extend(found)
            return out
        held = False
        for child in rule.children:
            found = _evaluate(child, fields, state)
            if found is not None:
                if rule.op == "not":
                    return None
                held = True
                out.extend(found)
        return [] if rule.op == "not" else (out if held else None)
    if isinstance(rule, _CNear):
        return _evaluate_near(rule, fields, state)
    return _evaluate_regex(rule, fields, state)


def _evaluate_near(rule: _CNear, fields: tuple[str, ...], state: _ItemState) -> list[_Hit] | None:
    out: list[_Hit] = []
    for name in fields:
        ops: list[list[tuple[tuple[int, int], str]]] = []
        for op in rule.operands:
            found = [(o, t.shown) for t in op for o in _occurrences(t, name, state)]
            if not found:
                break  # an operand missing from the field: nothing near anything here
            ops.append(found)
        if len(ops) < len(rule.operands):
            continue
        text = state.scans[name].folded.text
        for anchor, shown in ops[0]:
            group = [(name, anchor[0], anchor[1], shown)]
            for others in ops[1:]:
                close = [
                    (name, o[0], o[1], s)
                    for o, s in others
                    if _gap_within(text, anchor, o, rule.window)
                ]
                if not close:
                    break
                group.extend(close)
            else:
                folded = state.scans[name].folded
                out.extend((n, *folded.to_original(st, en), t) for n, st, en, t in group)
    return out or None


def _evaluate_regex(rule: _CRegex, fields: tuple[str, ...], state: _ItemState) -> list[_Hit] | None:
    out: list[_Hit] = []
    for name in fields:
        scan = state.scans.get(name)
        if scan is None or (rule.anchor is not None and scan.occ(rule.anchor) is None):
            continue
        view = scan.cased() if rule.case_sensitive else scan.folded
        for m in rule.regex.finditer(view.text):
            if m.end() > m.start():
                out.append((name, *view.to_original(m.start(), m.end()), rule.shown))
    return out or None


def _make_match(entry: _CEntry, hits: list[_Hit], scans: Mapping[str, _FieldScan]) -> Match:
    order = {name: i for i, name in enumerate(ITEM_FIELDS)}
    unique = sorted(set(hits), key=lambda h: (order.get(h[0], 99), h[1], h[2], h[3]))
    spans: list[Span] = []
    terms: list[str] = []
    seen: set[tuple[str, int, int]] = set()
    for name, o_start, o_end, shown in unique:
        if (name, o_start, o_end) in seen:
            continue  # another term folding to the same text found the same stretch
        seen.add((name, o_start, o_end))
        spans.append(Span(name, o_start, o_end, scans[name].original[o_start:o_end]))
        if shown not in terms:
            terms.append(shown)
    return Match(entry.watchlist_id, entry.entry_id, tuple(terms), tuple(spans))
