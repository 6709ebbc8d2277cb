"""Watchlist files: load, validate, and keep the last good compiled version.

A watchlist is one YAML file in the watchlists directory (format: ``docs/watchlists.md``).
Every problem is reported as ``file:line: message``; all problems of all files are
collected before :class:`~monitor.errors.WatchlistError` is raised, so one
``monitor watchlists check`` lists them all.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Generic, TypeVar, Union

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from monitor.errors import WatchlistError
from monitor.fold import fold_text
from monitor.models import ITEM_FIELDS

log = logging.getLogger(__name__)

PRIORITIES = ("high", "normal", "low")
SUFFIXES = (".yaml", ".yml")
DEFAULT_CONTEXT_WINDOW = 15
DEFAULT_NEAR_WINDOW = 5
MIN_PREFIX_CHARS = 3
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
# libyaml's safe loader when PyYAML was built with it (nodes keep their line marks): it
# parses ~10x faster, which matters for large watchlist directories.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Context:
    """Words that must stand near a term occurrence for it to count."""

    terms: tuple[Term, ...]
    window: int | str  # words between, or "field" / "item"


@dataclass(frozen=True)
class Term:
    """A phrase, matched on word boundaries after folding (``prefix``: open right end)."""

    text: str  # as written in the file (a trailing "*" removed)
    case_sensitive: bool = False
    prefix: bool = False
    context: Context | None = None
    exclude: tuple[Term, ...] = ()
    line: int = 0
    forms: bool = False  # inflected forms count too (monitor.morph)
    lang: str | None = None  # whose forms: ru, kk, uz, en (None: by the term's script)
    translit: bool = False  # Cyrillic <-> Latin spellings count too (monitor.translit)


@dataclass(frozen=True)
class Group:
    """``all``: every child holds; ``any``: at least one; ``not``: none of them."""

    op: str
    children: tuple[Rule, ...]


@dataclass(frozen=True)
class Near:
    """An occurrence of the first operand with every other operand within ``window`` words."""

    operands: tuple[tuple[Term, ...], ...]
    window: int


@dataclass(frozen=True)
class Regex:
    """A regular expression run on the folded text; ``anchor`` is a literal it always contains."""

    pattern: str
    anchor: str | None = None
    case_sensitive: bool = False
    line: int = 0


Rule = Union[Term, Group, Near, Regex]  # noqa: UP007 (a runtime alias, used before 3.12)


@dataclass(frozen=True)
class Entry:
    id: str
    name: str
    rule: Rule
    fields: tuple[str, ...] = ITEM_FIELDS
    description: str = ""
    line: int = 0


@dataclass(frozen=True)
class Watchlist:
    id: str
    name: str
    description: str
    tags: tuple[str, ...]
    priority: str
    entries: tuple[Entry, ...]
    path: Path
    exclude_if: tuple[Term, ...] = ()
    line: int = 1  # where the id is set (1 when it comes from the file name)
    languages: tuple[str, ...] = ()  # only items in these languages (empty: any)


# -- parsing ----------------------------------------------------------------------------

_WATCHLIST_KEYS = (
    "id",
    "name",
    "description",
    "tags",
    "priority",
    "fields",
    "exclude_if",
    "forms",
    "lang",
    "translit",
    "languages",
    "entries",
)
_ENTRY_KEYS = (
    "id",
    "name",
    "description",
    "fields",
    "terms",
    "all",
    "any",
    "not",
    "near",
    "regex",
    "context",
    "exclude",
)
_TERM_KEYS = (
    "text",
    "case_sensitive",
    "aliases",
    "forms",
    "lang",
    "translit",
    "context",
    "exclude",
)
_FORM_KEYS = ("forms", "lang", "translit")
#: Language tags a watchlist may name in ``lang`` / ``languages`` (uz: either script).
LANGUAGE_TAGS = ("en", "ru", "kk", "uz", "uz-Latn", "uz-Cyrl")
_LANG_CHOICES = ("en", "ru", "kk", "uz")
_GROUP_KEYS = ("all", "any", "not", "near", "regex")
_CONDITION_KEYS = ("terms", "all", "any", "not", "near", "regex")


class _Parser:
    """Turns one file's YAML nodes into a :class:`Watchlist`, collecting problems."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []
        self._constructor = SafeConstructor()
        # the watchlist's defaults for its terms: forms, lang, translit
        self.defaults: dict[str, object] = {}

    # - plumbing -

    def err(self, node: Node | None, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 1
        self.problems.append(f"{self.path}:{line}: {message}")

    def mapping(self, node: Node, where: str, allowed: Sequence[str]) -> dict[str, Node] | None:
        if not isinstance(node, MappingNode):
            self.err(node, f"{where} must be a mapping (key: value lines), not {_kind(node)}")
            return None
        out: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            if not isinstance(key, str):
                self.err(key_node, f"{where} has a key that is not a plain name")
                continue
            if key in out:
                self.err(key_node, f"duplicate key '{key}' in {where}")
                continue
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                self.err(key_node, f"unknown key '{key}' in {where}{hint}")
                continue
            out[key] = value_node
        return out

    def scalar(self, node: Node) -> object:
        return self._constructor.construct_object(node, deep=True)

    def string(self, node: Node, where: str, *, empty_ok: bool = False) -> str | None:
        value = self.scalar(node) if isinstance(node, ScalarNode) else None
        if not isinstance(value, str):
            self.err(node, f"{where} must be a string, not {_kind(node, value)}")
            return None
        if not empty_ok and not value.strip():
            self.err(node, f"{where} must not be empty")
            return None
        return value.strip()

    def boolean(self, node: Node, where: str) -> bool:
        value = self.scalar(node) if isinstance(node, ScalarNode) else None
        if not isinstance(value, bool):
            self.err(node, f"{where} must be true or false, not {_kind(node, value)}")
            return False
        return value

    def items(self, node: Node) -> list[Node]:
        """A sequence's items; a single value stands for a one-item list."""
        return list(node.value) if isinstance(node, SequenceNode) else [node]

    def ident(self, node: Node, where: str) -> str | None:
        value = self.string(node, where)
        if value is not None and not _ID.match(value):
            self.err(node, f"{where} '{value}' may hold only a-z, 0-9, '-' and '_'")
            return None
        return value

    # - terms -

    def term_text(self, node: Node, where: str) -> str | None:
        if not isinstance(node, ScalarNode):
            self.err(node, f"{where}: expected a term (text), not {_kind(node)}")
            return None
        value = self.scalar(node)
        if isinstance(value, bool) or value is None:
            self.err(node, f"{where}: '{node.value}' reads as {_kind(node, value)}; quote it")
            return None
        text = str(node.value if not isinstance(value, str) else value).strip()
        folded = fold_text(text.rstrip("*"))
        if not folded:
            self.err(node, f"{where}: empty term")
            return None
        if not any(ch.isalnum() for ch in folded):
            self.err(node, f"{where}: '{text}' has no letter or digit")
            return None
        return text

    def terms(self, node: Node, where: str, *, extras: bool) -> list[Term]:
        """A term list (or a single term). ``extras``: terms may carry context/exclude."""
        out: list[Term] = []
        nodes = self.items(node)
        if not nodes:
            self.err(node, f"{where}: empty list of terms")
        for item in nodes:
            out.extend(self.term(item, where, extras=extras))
        return out

    def term(self, node: Node, where: str, *, extras: bool) -> list[Term]:
        if not isinstance(node, MappingNode):
            text = self.term_text(node, where)
            return [t] if text is not None and (t := self.make_term(node, text, where)) else []
        keys = _TERM_KEYS if extras else ("text", "case_sensitive", "aliases", *_FORM_KEYS)
        fields = self.mapping(node, f"a term in {where}", keys)
        if fields is None:
            return []
        if "text" not in fields:
            self.err(node, f"a term in {where} needs 'text'")
            return []
        text = self.term_text(fields["text"], where)
        if text is None:
            return []
        case = "case_sensitive" in fields and self.boolean(
            fields["case_sensitive"], f"case_sensitive in {where}"
        )
        form_options = self.form_options(fields, where)
        context = self.context(fields["context"], where) if "context" in fields else None
        exclude: tuple[Term, ...] = ()
        if "exclude" in fields:
            exclude = tuple(self.terms(fields["exclude"], f"exclude of {where}", extras=False))
        texts: list[tuple[Node, str]] = [(node, text)]
        if "aliases" in fields:
            for alias in self.items(fields["aliases"]):
                if (alias_text := self.term_text(alias, f"aliases of {where}")) is not None:
                    texts.append((alias, alias_text))
        out = []
        for text_node, value in texts:
            made = self.make_term(text_node, value, where)
            if made is not None:
                out.append(
                    replace(
                        made,
                        case_sensitive=case,
                        context=context,
                        exclude=exclude,
                        **form_options,  # type: ignore[arg-type]
                    )
                )
        return out

    def make_term(self, node: Node, text: str, where: str) -> Term | None:
        if "*" in text.rstrip("*") or text.endswith("**"):
            self.err(node, f"{where}: '*' may only end a term (\"shrink*\"), in '{text}'")
            return None
        prefix = text.endswith("*")
        if prefix:
            text = text[:-1].rstrip()
            if len(fold_text(text)) < MIN_PREFIX_CHARS:
                self.err(node, f"{where}: a prefix term needs {MIN_PREFIX_CHARS}+ characters")
                return None
        return replace(
            Term(text, prefix=prefix, line=node.start_mark.line + 1),
            **self.defaults,  # type: ignore[arg-type]
        )

    def form_options(self, fields: dict[str, Node], where: str) -> dict[str, object]:
        """``forms``, ``lang`` and ``translit`` of a term or watchlist, as given."""
        out: dict[str, object] = {}
        for key in ("forms", "translit"):
            if key in fields:
                out[key] = self.boolean(fields[key], f"{key} in {where}")
        if "lang" in fields:
            value = self.string(fields["lang"], f"lang in {where}")
            if value is not None and value not in _LANG_CHOICES:
                self.err(
                    fields["lang"],
                    f"lang in {where} must be one of {', '.join(_LANG_CHOICES)}, not '{value}'",
                )
            elif value is not None:
                out["lang"] = value
                out.setdefault("forms", self.defaults.get("forms", value != "en"))
        return out

    def context(self, node: Node, where: str) -> Context | None:
        if isinstance(node, SequenceNode):
            return Context(
                tuple(self.terms(node, f"context of {where}", extras=False)), DEFAULT_CONTEXT_WINDOW
            )
        fields = self.mapping(node, f"context of {where}", ("terms", "window"))
        if fields is None:
            return None
        if "terms" not in fields:
            self.err(node, f"context of {where} needs 'terms'")
            return None
        terms = tuple(self.terms(fields["terms"], f"context of {where}", extras=False))
        window: int | str = DEFAULT_CONTEXT_WINDOW
        if "window" in fields:
            value = self.scalar(fields["window"])
            if value in ("field", "item") or (_is_int(value) and value >= 0):  # type: ignore[operator]
                window = value  # type: ignore[assignment]
            else:
                self.err(
                    fields["window"],
                    f"window of context in {where} must be a number "
                    f"of words (0 or more), 'field' or 'item', not {value!r}",
                )
        return Context(terms, window)

    # - rules -

    def rules(self, node: Node, where: str) -> list[Rule]:
        """Items of an all/any/not list: terms, or one-key mappings holding a sub-group."""
        out: list[Rule] = []
        items = self.items(node)
        if not items:
            self.err(node, f"{where}: empty list")
        for item in items:
            if isinstance(item, MappingNode) and not any(
                isinstance(k, ScalarNode) and k.value == "text" for k, _ in item.value
            ):
                fields = self.mapping(item, f"a group in {where}", _GROUP_KEYS)
                if fields is None:
                    continue
                if len(fields) != 1:
                    self.err(
                        item,
                        f"a group in {where} needs exactly one of "
                        f"{', '.join(_GROUP_KEYS)} (or 'text' for a term)",
                    )
                    continue
                ((key, value),) = fields.items()
                if (rule := self.condition(key, value, where)) is not None:
                    out.append(rule)
            else:
                out.extend(self.term(item, where, extras=True))
        return out

    def condition(self, key: str, node: Node, where: str) -> Rule | None:
        if key == "terms":
            terms = self.terms(node, f"terms of {where}", extras=True)
            return Group("any", tuple(terms)) if terms else None
        if key in ("all", "any", "not"):
            children = self.rules(node, f"'{key}' of {where}")
            return Group(key, tuple(children)) if children else None
        if key == "near":
            return self.near(node, where)
        regexes = [r for item in self.items(node) if (r := self.regex(item, where)) is not None]
        if not regexes:
            return None
        return regexes[0] if len(regexes) == 1 else Group("any", tuple(regexes))

    def near(self, node: Node, where: str) -> Near | None:
        fields = self.mapping(node, f"near of {where}", ("terms", "window"))
        if fields is None:
            return None
        if "terms" not in fields or not isinstance(fields["terms"], SequenceNode):
            self.err(node, f"near of {where} needs 'terms': a list of two or more terms")
            return None
        operands = []
        for item in fields["terms"].value:
            terms = self.terms(item, f"near of {where}", extras=True)
            if terms:
                operands.append(tuple(terms))
        if len(fields["terms"].value) < 2:
            self.err(fields["terms"], f"near of {where} needs two or more terms")
            return None
        window = DEFAULT_NEAR_WINDOW
        if "window" in fields:
            value = self.scalar(fields["window"])
            if _is_int(value) and value >= 0:  # type: ignore[operator]
                window = value  # type: ignore[assignment]
            else:
                self.err(
                    fields["window"],
                    f"window of near in {where} must be a number of "
                    f"words (0 or more), not {value!r}",
                )
        return Near(tuple(operands), window) if len(operands) >= 2 else None

    def regex(self, node: Node, where: str) -> Regex | None:
        anchor: str | None = None
        case = False
        pattern_node = node
        if isinstance(node, MappingNode):
            keys = ("pattern", "anchor", "case_sensitive")
            fields = self.mapping(node, f"regex of {where}", keys)
            if fields is None:
                return None
            if "pattern" not in fields:
                self.err(node, f"regex of {where} needs 'pattern'")
                return None
            pattern_node = fields["pattern"]
            if "anchor" in fields:
                anchor = self.string(fields["anchor"], f"anchor of regex in {where}")
                if anchor is not None and not fold_text(anchor):
                    self.err(fields["anchor"], f"anchor of regex in {where} folds to nothing")
                    anchor = None
            if "case_sensitive" in fields:
                case = self.boolean(fields["case_sensitive"], f"regex of {where}")
        pattern = self.string(pattern_node, f"regex of {where}")
        if pattern is None:
            return None
        try:
            compiled = re.compile(pattern, 0 if case else re.IGNORECASE)
        except re.error as exc:
            self.err(pattern_node, f"bad regex in {where}: {exc}")
            return None
        if compiled.search("") is not None:
            self.err(pattern_node, f"regex in {where} matches empty text; it would match anything")
            return None
        return Regex(pattern, anchor, case, pattern_node.start_mark.line + 1)

    # - entries and files -

    def entry(self, node: Node, index: int, defaults: tuple[str, ...]) -> Entry | None:
        where = f"entry {index + 1}"
        if isinstance(node, MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == "id" and isinstance(value_node, ScalarNode):
                    where = f"entry '{value_node.value}'"
                    break
        fields = self.mapping(node, where, _ENTRY_KEYS)
        if fields is None:
            return None
        entry_id = self.ident(fields["id"], "entry id") if "id" in fields else None
        name = self.string(fields["name"], "entry name") if "name" in fields else None
        if entry_id is None and name is not None and "id" not in fields:
            entry_id = re.sub(r"[^a-z0-9]+", "-", fold_text(name)).strip("-") or None
        if entry_id is None:
            if "id" not in fields and "name" not in fields:
                self.err(node, f"entry {index + 1} needs an 'id' or a 'name'")
            return None
        where = f"entry '{entry_id}'"
        desc = ""
        if "description" in fields:
            desc = (
                self.string(fields["description"], f"description of {where}", empty_ok=True) or ""
            )
        entry_fields = defaults
        if "fields" in fields:
            entry_fields = self.fields(fields["fields"], where) or defaults
        context = self.context(fields["context"], where) if "context" in fields else None
        exclude: tuple[Term, ...] = ()
        if "exclude" in fields:
            exclude = tuple(self.terms(fields["exclude"], f"exclude of {where}", extras=False))
        conditions: list[Rule] = []
        for key in _CONDITION_KEYS:
            if key in fields and (rule := self.condition(key, fields[key], where)) is not None:
                conditions.append(rule)
        if not any(key in fields for key in _CONDITION_KEYS):
            self.err(node, f"{where} needs 'terms' (or 'all', 'any', 'near', 'regex')")
            return None
        if not conditions:
            return None  # the problems were reported where they are
        rule = conditions[0] if len(conditions) == 1 else Group("all", tuple(conditions))
        if not _needs_trigger(rule):
            self.err(
                node,
                f"{where} could match an item without any of its terms (a 'not' is its "
                "only condition, or sits directly under 'any'); add a term it needs",
            )
            return None
        if context is not None or exclude:
            rule = _with_defaults(rule, context, exclude)
        return Entry(entry_id, name or entry_id, rule, entry_fields, desc, node.start_mark.line + 1)

    def fields(self, node: Node, where: str) -> tuple[str, ...] | None:
        names: list[str] = []
        for item in self.items(node):
            value = self.string(item, f"fields of {where}")
            if value is None:
                continue
            if value == "any":
                names.extend(ITEM_FIELDS)
            elif value in ITEM_FIELDS:
                names.append(value)
            else:
                choices = ", ".join((*ITEM_FIELDS, "any"))
                self.err(item, f"unknown field '{value}' in {where} (choose from {choices})")
        return tuple(f for f in ITEM_FIELDS if f in names) or None

    def watchlist(self, root: Node) -> Watchlist | None:
        fields = self.mapping(root, "a watchlist file", _WATCHLIST_KEYS)
        if fields is None:
            return None
        wl_id, id_line = self.path.stem, 1
        if "id" in fields:
            wl_id = self.ident(fields["id"], "watchlist id") or wl_id
            id_line = fields["id"].start_mark.line + 1
        elif not _ID.match(wl_id):
            self.err(None, f"file name '{self.path.name}' is not a valid watchlist id; add 'id:'")
        name = self.string(fields["name"], "name") if "name" in fields else None
        description = ""
        if "description" in fields:
            description = self.string(fields["description"], "description", empty_ok=True) or ""
        tags: list[str] = []
        for tag in self.items(fields["tags"]) if "tags" in fields else []:
            if (value := self.string(tag, "a tag")) is not None:
                tags.append(value)
        priority = "normal"
        if "priority" in fields:
            value = self.string(fields["priority"], "priority")
            if value is not None and value not in PRIORITIES:
                self.err(
                    fields["priority"],
                    f"priority must be one of {', '.join(PRIORITIES)}, not '{value}'",
                )
            elif value is not None:
                priority = value
        self.defaults = self.form_options(fields, "the watchlist")
        languages: list[str] = []
        for node in self.items(fields["languages"]) if "languages" in fields else []:
            value = self.string(node, "a language in languages")
            if value is not None and value not in LANGUAGE_TAGS:
                self.err(
                    node,
                    f"languages: '{value}' is not one of {', '.join(LANGUAGE_TAGS)}",
                )
            elif value is not None:
                languages.append(value)
        defaults = ITEM_FIELDS
        if "fields" in fields:
            defaults = self.fields(fields["fields"], "the watchlist") or ITEM_FIELDS
        exclude_if: tuple[Term, ...] = ()
        if "exclude_if" in fields:
            exclude_if = tuple(self.terms(fields["exclude_if"], "exclude_if", extras=False))
        if "entries" not in fields:
            self.err(root, "missing key 'entries' (the list of things to find)")
            return None
        entry_nodes = fields["entries"]
        if not isinstance(entry_nodes, SequenceNode) or not entry_nodes.value:
            self.err(entry_nodes, "'entries' must be a non-empty list")
            return None
        entries: list[Entry] = []
        seen: dict[str, int] = {}
        for index, node in enumerate(entry_nodes.value):
            entry = self.entry(node, index, defaults)
            if entry is None:
                continue
            if entry.id in seen:
                self.err(node, f"duplicate entry id '{entry.id}' (first at line {seen[entry.id]})")
                continue
            seen[entry.id] = entry.line
            entries.append(entry)
        return Watchlist(
            wl_id,
            name or wl_id,
            description,
            tuple(tags),
            priority,
            tuple(entries),
            self.path,
            exclude_if,
            id_line,
            tuple(languages),
        )


def _kind(node: Node, value: object = None) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if value is None:
        return "empty (null)"
    if isinstance(value, str):
        return f"'{value}'"
    return {bool: "true/false", int: "a number", float: "a number"}.get(type(value), "a value")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _needs_trigger(rule: Rule) -> bool:
    """True when the rule can only hold if one of its positive terms/regexes is found."""
    if isinstance(rule, Group):
        if rule.op == "not":
            return False
        results = [_needs_trigger(child) for child in rule.children]
        return any(results) if rule.op == "all" else all(results)
    return True


def _with_defaults(rule: Rule, context: Context | None, exclude: tuple[Term, ...]) -> Rule:
    """Push an entry's context/exclude down to its terms (not those under 'not')."""
    if isinstance(rule, Term):
        return replace(rule, context=rule.context or context, exclude=rule.exclude + exclude)
    if isinstance(rule, Group) and rule.op != "not":
        children = tuple(_with_defaults(child, context, exclude) for child in rule.children)
        return replace(rule, children=children)
    if isinstance(rule, Near):
        operands = tuple(
            tuple(replace(t, context=t.context or context, exclude=t.exclude + exclude) for t in op)
            for op in rule.operands
        )
        return replace(rule, operands=operands)
    return rule


def parse_watchlist(path: Path, problems: list[str]) -> Watchlist | None:
    """One file, parsed as far as it goes; its problems are appended to ``problems``."""
    parser = _Parser(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path}:1: cannot read: {exc}")
        return None
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problems.append(f"{path}:{line}: YAML syntax error: {exc.problem or exc.context}")
        return None
    except yaml.YAMLError as exc:
        problems.append(f"{path}:1: YAML error: {exc}")
        return None
    if root is None:
        problems.append(f"{path}:1: empty file")
        return None
    watchlist = parser.watchlist(root)
    problems.extend(parser.problems)
    return watchlist


def watchlist_files(directory: Path) -> list[Path]:
    return sorted(
        p
        for p in directory.iterdir()
        if p.suffix in SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def _load(directory: Path) -> tuple[list[Watchlist], list[str]]:
    problems: list[str] = []
    if not directory.is_dir():
        return [], [f"{directory}: not a directory"]
    watchlists: list[Watchlist] = []
    seen: dict[str, Watchlist] = {}
    for path in watchlist_files(directory):
        before = len(problems)
        watchlist = parse_watchlist(path, problems)
        if watchlist is None:
            continue  # a file with problems still claims its id, to report duplicates
        if (first := seen.get(watchlist.id)) is not None:
            problems.append(
                f"{path}:{watchlist.line}: duplicate watchlist id '{watchlist.id}' "
                f"(also in {first.path}:{first.line})"
            )
            continue
        seen[watchlist.id] = watchlist
        if len(problems) == before:
            watchlists.append(watchlist)
    return watchlists, problems


def load_watchlists(directory: Path) -> list[Watchlist]:
    """Every watchlist in ``directory``; raises WatchlistError listing every problem."""
    if not directory.is_dir():
        raise WatchlistError(
            f"{directory.absolute()}: not a directory",
            hint="set [watchlists] dir (a relative path is taken from the folder monitor "
            "runs in), or create the folder",
        )
    watchlists, problems = _load(directory)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise WatchlistError(problems[0] + more, problems=problems)
    return watchlists


def check_watchlists(directory: Path) -> list[str]:
    """Every problem as ``file:line: message``; empty when the directory is fine."""
    return _load(directory)[1]


# -- the registry: the current compiled version, refreshed on edit ------------------------


def _snapshot(directory: Path) -> tuple[tuple[str, int, int], ...]:
    try:
        files = watchlist_files(directory)
        return tuple((p.name, (st := p.stat()).st_mtime_ns, st.st_size) for p in files)
    except OSError:
        return ()


Compiled = TypeVar("Compiled")


class WatchlistRegistry(Generic[Compiled]):
    """The last good watchlists of a directory and their compiled form.

    ``compile`` turns the watchlists into what matching uses (the pipeline passes
    ``match.compile_watchlists``; this module does not import the matcher).

    ``refresh()`` is cheap when nothing changed (one directory listing and a stat per
    file). A bad edit is logged (every problem as file:line, at ERROR) and the last good
    version stays in use.
    """

    def __init__(self, directory: Path, compile: Callable[[Sequence[Watchlist]], Compiled]) -> None:
        self.directory = directory
        self._compile = compile
        self._snapshot = _snapshot(directory)
        self._watchlists = load_watchlists(directory)
        self._matcher = compile(self._watchlists)
        self._version = 1
        self._failed: tuple[tuple[str, int, int], ...] | None = None
        self._problems: list[str] = []

    @property
    def matcher(self) -> Compiled:
        return self._matcher

    @property
    def watchlists(self) -> list[Watchlist]:
        return list(self._watchlists)

    @property
    def version(self) -> int:
        """Goes up by one each time a changed directory loads cleanly."""
        return self._version

    @property
    def problems(self) -> list[str]:
        """The problems of the current files when they failed to load (else empty)."""
        return list(self._problems)

    def refresh(self) -> list[str]:
        """Reload if any file changed; the problems of a bad edit (the old version stays)."""
        snapshot = _snapshot(self.directory)
        if snapshot == self._snapshot:
            return []
        if snapshot == self._failed:
            return list(self._problems)
        watchlists, problems = _load(self.directory)
        if problems:
            for problem in problems:
                log.error("watchlist not reloaded: %s", problem)
            log.error("keeping the last good watchlists (version %d)", self._version)
            self._failed, self._problems = snapshot, problems
            return list(problems)
        self._matcher = self._compile(watchlists)
        self._watchlists = watchlists
        self._snapshot, self._failed, self._problems = snapshot, None, []
        self._version += 1
        log.info("watchlists reloaded from %s (version %d)", self.directory, self._version)
        return []
