"""The PII policy for free text: what is redacted before any stage writes a query, a response
or a prompt anywhere (spool, Kafka, Delta), as one pure function.

    redact("mail bob@example.com", policy)   # -> "mail [email]"

Each kind is found by a maintained detector where one exists, and by a small pattern
validated by a checksum or a registry otherwise:

- phone: `phonenumbers.PhoneNumberMatcher` (Google's libphonenumber metadata) for each
  configured region, so '+44 20 7946 0958' and '(415) 555-0132' go but times, prices and
  percentages stay (a regex cannot tell them apart);
- email: one practical-subset regex (an address is lexical: no library adds precision);
- card: 13-19 digits (spaces or dashes allowed) that pass `stdnum.luhn`;
- national_id: US SSNs `ddd-dd-dddd` valid by `stdnum.us.ssn` (no 000/666/9xx areas), UK
  National Insurance numbers, IBANs valid by `stdnum.iban`;
- address: `pyap` (the maintained pyap2 fork: full US, CA and GB addresses) plus a
  street-line pattern (a number, up to 4 capitalised words, a street type), because pyap
  needs a city or postcode and users say "I live at 12 Elm Street".

Presidio was considered and refused: it loads spaCy models at run time (no downloads here).
Redaction is on by default for every kind; `PiiPolicy.kinds` narrows it.

May import: the standard library, pydantic, phonenumbers, python-stdnum, pyap.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Literal

import phonenumbers
import pyap
from pydantic import BaseModel, ConfigDict, Field
from stdnum import iban, luhn
from stdnum.us import ssn

__all__ = ["PII_KINDS", "PiiKind", "PiiPolicy", "find_pii", "redact", "redact_mapping"]

PiiKind = Literal["email", "phone", "card", "national_id", "address"]
PII_KINDS: tuple[PiiKind, ...] = ("email", "phone", "card", "national_id", "address")

# Every kind holds a digit (phones, cards, ids, street numbers) or an '@' (emails): text
# without either is returned at once (most queries; the detectors cost ~2 ms a text).
_MAY_HOLD_PII = re.compile(r"[\d@]")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_SSN = re.compile(r"(?<!\d)\d{3}([- ])\d{2}\1\d{4}(?!\d)")
_NINO = re.compile(r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
_STREET_TYPES = (r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|"
                 r"Way|Place|Pl|Terrace|Parkway|Pkwy|Square|Sq|Highway|Hwy|Close|Crescent")
_STREET = re.compile(
    rf"\b\d{{1,6}}[A-Za-z]?,?\s+(?:[A-Z][\w.'-]*\s+){{1,4}}(?:{_STREET_TYPES})\b\.?"
)


class PiiPolicy(BaseModel):
    """Which kinds of personal data are redacted from free text, and how numbers are read."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kinds: tuple[PiiKind, ...] = Field(
        PII_KINDS, description="Kinds redacted before anything is written (empty: none)."
    )
    phone_regions: tuple[str, ...] = Field(
        ("US", "GB", "DE", "FR", "IN"), min_length=1,
        description="Regions whose national phone formats are recognised without a '+'.",
    )
    address_countries: tuple[Literal["US", "CA", "GB"], ...] = Field(
        ("US", "GB", "CA"), description="Countries whose full postal addresses pyap finds."
    )


def _emails(text: str) -> Iterator[tuple[int, int]]:
    for m in _EMAIL.finditer(text):
        yield m.start(), m.end()


def _phones(text: str, policy: PiiPolicy) -> Iterator[tuple[int, int]]:
    for region in policy.phone_regions:
        # VALID (the default) checks the number against the region's plan: times, prices
        # and percentages stay; POSSIBLE redacted "7:30" and "19.99" in a trial.
        for match in phonenumbers.PhoneNumberMatcher(text, region):
            yield match.start, match.end


def _cards(text: str) -> Iterator[tuple[int, int]]:
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn.is_valid(digits):
            yield m.start(), m.end()


def _national_ids(text: str) -> Iterator[tuple[int, int]]:
    for m in _SSN.finditer(text):
        if ssn.is_valid(m.group().replace(" ", "-")):
            yield m.start(), m.end()
    for m in _NINO.finditer(text):
        yield m.start(), m.end()
    for m in _IBAN.finditer(text):
        if iban.is_valid(m.group()):
            yield m.start(), m.end()


def _addresses(text: str, policy: PiiPolicy) -> Iterator[tuple[int, int]]:
    for country in policy.address_countries:
        for address in pyap.parse(text, country=country):
            if address.match_start is not None and address.match_end is not None:
                yield int(address.match_start), int(address.match_end)
    for m in _STREET.finditer(text):
        yield m.start(), m.end()


def find_pii(text: str, policy: PiiPolicy) -> list[tuple[int, int, PiiKind]]:
    """Spans (start, end, kind) of personal data in `text`, in order; overlapping spans are
    merged under the kind of the longest one that starts first."""
    found: list[tuple[int, int, PiiKind]] = []
    for kind in policy.kinds:
        if kind == "email":
            spans = list(_emails(text))
        elif kind == "phone":
            spans = list(_phones(text, policy))
        elif kind == "card":
            spans = list(_cards(text))
        elif kind == "national_id":
            spans = list(_national_ids(text))
        elif kind == "address":
            spans = list(_addresses(text, policy))
        else:  # pragma: no cover - Literal exhausted
            raise ValueError(f"unknown PII kind {kind!r}; use one of {PII_KINDS}")
        found += [(start, end, kind) for start, end in spans]
    merged: list[tuple[int, int, PiiKind]] = []
    for start, end, kind in sorted(found, key=lambda s: (s[0], -s[1])):
        if merged and start < merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], end), last[2])
        else:
            merged.append((start, end, kind))
    return merged


def redact(text: str, policy: PiiPolicy) -> str:
    """`text` with each personal-data span replaced by `[kind]`."""
    if not text or not policy.kinds or not _MAY_HOLD_PII.search(text):
        return text
    out, cursor = [], 0
    for start, end, kind in find_pii(text, policy):
        out.append(text[cursor:start])
        out.append(f"[{kind}]")
        cursor = end
    out.append(text[cursor:])
    return "".join(out)


def redact_mapping(values: dict[str, object], fields: tuple[str, ...],
                   policy: PiiPolicy) -> dict[str, object]:
    """A copy of `values` with the string (or list-of-string) `fields` redacted."""
    result = dict(values)
    for name in fields:
        value = result.get(name)
        if isinstance(value, str):
            result[name] = redact(value, policy)
        elif isinstance(value, list):
            result[name] = [redact(v, policy) if isinstance(v, str) else v for v in value]
    return result
