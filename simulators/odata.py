"""Just enough OData v2 for the ERP simulator to look like SAP S/4HANA.

A recursive-descent `$filter` parser (`eq`, `ne`, `gt`, `ge`, `lt`, `le`, `and`, `or`, parentheses, `'...'`
strings with `''` escaping, `true`/`false`), the other query options, and `EntitySet`: rows kept in their wire
form and indexed by the fields clients batch on, so an `or`-joined list of thousands of keys is answered from the
index instead of a scan.
"""

from __future__ import annotations

import hashlib
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.exceptions import HTTPException

from simulators.web import error_code

Row = dict[str, Any]
Key = tuple[str, ...]
Predicate = Callable[[Row], bool]

UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}
KEYWORDS = {*COMPARISONS, "and", "or", "true", "false"}
TOKEN = re.compile(r"\s*(?:(?P<open>\()|(?P<close>\))|'(?P<string>(?:[^']|'')*)'|(?P<word>[A-Za-z_]\w*))")
DATE = re.compile(r"/Date\((-?\d+)\)/")


def to_date(moment: datetime) -> str:
    """OData v2 JSON date: milliseconds since 1970 wrapped as `/Date(ms)/`."""
    return f"/Date({(moment - UNIX_EPOCH) // timedelta(milliseconds=1)})/"


def to_decimal(value: float | Decimal, places: int = 3) -> str:
    """Edm.Decimal travels as a string with fixed decimals, e.g. `"125.000"`."""
    return f"{value:.{places}f}"


def odata_error(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    """SAP's error body; `code` is the application's message id (e.g. `CO/001`), else one derived from `status`."""
    return {"error": {"code": code or error_code(status), "message": {"lang": "en", "value": message}}}


def bad_request(message: str) -> HTTPException:
    return HTTPException(400, message)


# ------------------------------------------------------------------------------------------------- $filter


@dataclass(frozen=True, slots=True)
class Compare:
    field: str
    op: str  # one of COMPARISONS
    value: str | bool


@dataclass(frozen=True, slots=True)
class Junction:
    op: str  # and / or
    terms: tuple[Expr, ...]


Expr = Compare | Junction


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos, text = [], 0, text.rstrip()
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if match is None:
            raise bad_request(f"$filter: unexpected input at position {pos}: {text[pos : pos + 20]!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        tokens.append((kind, value.replace("''", "'") if kind == "string" else value))
        pos = match.end()
    return tokens


class _Parser:
    """disjunction := conjunction ('or' conjunction)*; conjunction := factor ('and' factor)*;
    factor := '(' disjunction ')' | Field ('eq' | 'ne' | 'gt' | 'ge' | 'lt' | 'le') literal."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0

    def parse(self) -> Expr:
        expr = self.disjunction()
        if self.pos != len(self.tokens):
            raise bad_request(f"$filter: unexpected {self.tokens[self.pos][1]!r}")
        return expr

    def disjunction(self) -> Expr:
        return self.joined("or", self.conjunction)

    def conjunction(self) -> Expr:
        return self.joined("and", self.factor)

    def joined(self, op: str, operand: Callable[[], Expr]) -> Expr:
        terms = [operand()]
        while self.accept("word", op):
            terms.append(operand())
        return terms[0] if len(terms) == 1 else Junction(op, tuple(terms))

    def factor(self) -> Expr:
        if self.accept("open"):
            expr = self.disjunction()
            self.expect("close")
            return expr
        field = self.expect("word")
        if field in KEYWORDS:
            raise bad_request(f"$filter: expected a field name, got {field!r}")
        op = self.expect("word")
        if op not in COMPARISONS:
            raise bad_request(f"$filter: unsupported operator {op!r} (only {', '.join(COMPARISONS)})")
        kind, value = self.next()
        if kind == "string":
            return Compare(field, op, value)
        if kind == "word" and value in ("true", "false"):
            return Compare(field, op, value == "true")
        raise bad_request(f"$filter: expected a literal after {field} {op}, got {value!r}")

    def next(self) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise bad_request("$filter: unexpected end of expression")
        self.pos += 1
        return self.tokens[self.pos - 1]

    def expect(self, kind: str) -> str:
        got, value = self.next()
        if got != kind:
            raise bad_request(f"$filter: expected {kind}, got {value!r}")
        return value

    def accept(self, kind: str, value: str | None = None) -> bool:
        if (
            self.pos < len(self.tokens)
            and self.tokens[self.pos][0] == kind
            and (value is None or self.tokens[self.pos][1] == value)
        ):
            self.pos += 1
            return True
        return False


def parse_filter(text: str) -> Expr:
    """Parse a `$filter` expression; anything unparseable is a 400 with an OData error body."""
    try:
        return _Parser(_tokenize(text)).parse()
    except RecursionError as exc:
        raise bad_request("$filter: expression nested too deeply") from exc


# -------------------------------------------------------------------------------------------- entity sets


def _date_key(value: str) -> int:
    match = DATE.fullmatch(value)
    return int(match.group(1)) if match else 0


SORT_KEYS: dict[str, Callable[[Any], Any]] = {
    "string": str,
    "number": int,  # a string of digits on the wire (a sequence number), compared and sorted as an integer
    "bool": bool,
    "decimal": Decimal,
    "date": _date_key,
}


@dataclass(frozen=True, slots=True)
class Query:
    predicate: Predicate | None
    candidates: set[Key] | None
    top: int | None
    skip: int
    select: tuple[str, ...] | None
    orderby: tuple[str, bool] | None  # field, descending
    count: bool


class EntitySet:
    """One OData collection: rows in wire form keyed by their key tuple, with per-entity ETags."""

    def __init__(
        self, service: str, name: str, key: Key, fields: Mapping[str, str], indexed: Iterable[str] = ()
    ) -> None:
        self.service, self.name, self.key, self.fields = service, name, key, dict(fields)
        self.type = f"{service}.{name}Type"
        self.rows: dict[Key, Row] = {}
        self.versions: dict[Key, int] = {}
        # Single keys are always indexed; composite-key sets index only the fields clients batch on.
        fields_to_index = dict.fromkeys((*key, *indexed) if len(key) == 1 else indexed)
        self.indexes: dict[str, dict[Any, set[Key]]] = {f: {} for f in fields_to_index}
        # Rows come in key order; a key that is not all strings sorts in its fields' types ('9' before '10').
        kinds = [SORT_KEYS[self.fields[f]] for f in key]
        self.key_order: Callable[[Key], Any] | None = (
            None
            if all(kind is str for kind in kinds)
            else lambda k: tuple(kind(value) for kind, value in zip(kinds, k, strict=True))
        )

    def key_of(self, row: Row) -> Key:
        return tuple([row[f] for f in self.key])

    def put(self, row: Row) -> None:
        """Insert or replace a row; a replaced row gets a new ETag."""
        key = self.key_of(row)
        self.delete(key)
        self.rows[key] = row
        for field, index in self.indexes.items():
            index.setdefault(row[field], set()).add(key)

    def delete(self, key: Key) -> None:
        """Remove a row; its key's version moves on, so a row put back later never reuses an old ETag."""
        row = self.rows.pop(key, None)
        if row is not None:
            self.versions[key] = self.versions.get(key, 0) + 1
            for field, index in self.indexes.items():
                index[row[field]].discard(key)

    def etag(self, key: Key) -> str:
        digest = hashlib.sha1(repr((key, self.versions.get(key, 0))).encode()).hexdigest()[:16]
        return f'W/"{digest}"'

    def uri(self, base: str, key: Key) -> str:
        quoted = [value.replace("'", "''") for value in key]
        if len(quoted) == 1:
            return f"{base}{self.service}/{self.name}('{quoted[0]}')"
        pairs = ",".join(f"{field}='{value}'" for field, value in zip(self.key, quoted, strict=True))
        return f"{base}{self.service}/{self.name}({pairs})"

    def render(self, key: Key, base: str, select: tuple[str, ...] | None = None) -> Row:
        row = self.rows[key]
        uri = self.uri(base, key)
        entity: Row = {"__metadata": {"id": uri, "uri": uri, "type": self.type, "etag": self.etag(key)}}
        entity.update(row if select is None else {field: row[field] for field in select})
        return entity

    # -- query options

    def field(self, name: str) -> str:
        if name not in self.fields:
            raise bad_request(f"property {name!r} does not exist in {self.type}")
        return self.fields[name]

    def compile(self, expr: Expr) -> Predicate:
        """A predicate for `expr`; an `or` of `eq` terms on one field becomes a set-membership test."""
        if isinstance(expr, Compare):
            field, value, test = expr.field, self.literal(expr), COMPARISONS[expr.op]
            convert = SORT_KEYS[self.field(field)]
            return lambda row: test(convert(row[field]), value)
        if expr.op == "and":
            parts = [self.compile(term) for term in expr.terms]
            return lambda row: all(part(row) for part in parts)
        members: dict[str, set[Any]] = {}
        others: list[Predicate] = []
        for term in expr.terms:
            if isinstance(term, Compare) and term.op == "eq":
                members.setdefault(term.field, set()).add(self.literal(term))
            else:
                others.append(self.compile(term))
        tests = [(field, SORT_KEYS[self.field(field)], values) for field, values in members.items()]
        return lambda row: (
            any(convert(row[field]) in values for field, convert, values in tests) or any(part(row) for part in others)
        )

    def literal(self, compare: Compare) -> Any:
        """The literal converted to the field's type, so `'125.0'` equals a stored `"125.000"` and
        `ChangeSequence gt '9'` compares numbers."""
        kind = self.field(compare.field)
        if (kind == "bool") != isinstance(compare.value, bool):
            raise bad_request(f"$filter: {compare.field} cannot be compared with {compare.value!r}")
        if kind == "bool" and compare.op not in ("eq", "ne"):
            raise bad_request(f"$filter: {compare.field} is a boolean, only eq and ne apply")
        try:
            return SORT_KEYS[kind](compare.value)
        except (InvalidOperation, ValueError) as exc:
            raise bad_request(f"$filter: {compare.value!r} is not a {kind}") from exc

    def candidates(self, expr: Expr) -> set[Key] | None:
        """Keys that may match, from the indexes; None when the expression needs a full scan."""
        if isinstance(expr, Compare):
            index = self.indexes.get(expr.field)
            if expr.op != "eq" or index is None:
                return None
            return set(index.get(expr.value, ()))
        found = [self.candidates(term) for term in expr.terms]
        if expr.op == "or":
            return None if any(f is None for f in found) else set().union(*found)
        known = [f for f in found if f is not None]
        return set.intersection(*known) if known else None

    def parse_query(self, params: Mapping[str, str]) -> Query:
        unsupported = sorted(p for p in params if p.startswith("$") and p not in QUERY_OPTIONS)
        if unsupported:
            raise bad_request(f"unsupported system query option {unsupported[0]}")
        if params.get("$format", "json") != "json":
            raise bad_request("only $format=json is supported")
        predicate = candidates = None
        if text := params.get("$filter"):
            expr = parse_filter(text)
            predicate, candidates = self.compile(expr), self.candidates(expr)
        select = None
        if text := params.get("$select"):
            select = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
            for name in select:
                self.field(name)
        orderby = None
        if text := params.get("$orderby"):
            parts = text.split()
            if len(parts) not in (1, 2) or (len(parts) == 2 and parts[1] not in ("asc", "desc")):
                raise bad_request(f"$orderby: expected 'Field [asc|desc]', got {text!r}")
            self.field(parts[0])
            orderby = (parts[0], parts[-1] == "desc")
        inlinecount = params.get("$inlinecount", "none")
        if inlinecount not in ("none", "allpages"):
            raise bad_request("$inlinecount must be allpages or none")
        top = _count_option(params, "$top")
        return Query(
            predicate, candidates, top, _count_option(params, "$skip") or 0, select, orderby, inlinecount == "allpages"
        )

    def query(self, params: Mapping[str, str], base: str) -> dict[str, Any]:
        """Answer a collection GET: filter, order, page, select, and wrap in `{"d": {"results": ...}}`."""
        query = self.parse_query(params)
        keys = sorted(
            self.rows if query.candidates is None else query.candidates & self.rows.keys(), key=self.key_order
        )
        if query.predicate is not None:
            keys = [key for key in keys if query.predicate(self.rows[key])]
        if query.orderby is not None:
            field, descending = query.orderby
            convert = SORT_KEYS[self.fields[field]]
            keys.sort(key=lambda key: convert(self.rows[key][field]), reverse=descending)
        total = len(keys)
        end = None if query.top is None else query.skip + query.top
        results = [self.render(key, base, query.select) for key in keys[query.skip : end]]
        body: dict[str, Any] = {"results": results}
        if query.count:
            body["__count"] = str(total)
        return {"d": body}


QUERY_OPTIONS = {"$filter", "$top", "$skip", "$select", "$orderby", "$inlinecount", "$format"}


def _count_option(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise bad_request(f"{name} must be a non-negative integer")
    return int(raw)
