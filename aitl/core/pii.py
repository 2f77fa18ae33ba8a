"""Redaction of personal data in the copies of text kept for training, exports and digests.

The live Slack thread shows agents what they need; only stored training copies pass here,
when they are captured, and again where they leave for training, an export or a digest.
"""

from __future__ import annotations

import re

import pyap

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# digit runs of 13-19 with optional spaces/dashes, checked with Luhn below
CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
# international or North-American style numbers with at least 9 digits
PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){1,3}(?!\w)"
)


# the countries whose street addresses pyap can find in free text
ADDRESS_COUNTRIES = ("US", "CA", "GB")
DIGIT = re.compile(r"\d")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[CARD]" if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group(0)


def _phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[PHONE]" if 9 <= len(digits) <= 15 else match.group(0)


def redact_addresses(text: str) -> str:
    """Street addresses pyap finds (US, Canadian, British) become ``[ADDRESS]``.

    Every address pyap knows starts with a house number, so text without a digit is passed
    over without parsing (most ticket text: parsing costs about 2 ms per short text).
    """
    if not DIGIT.search(text):
        return text
    found = sorted(
        (a.match_start, a.match_end)
        for country in ADDRESS_COUNTRIES
        for a in pyap.parse(text, country=country)
    )
    merged: list[list[int]] = []
    for start, stop in found:  # two countries' rules may find overlapping spans: join them
        while start < stop and text[start].isspace():
            start += 1
        while start > 0 and text[start - 1].isalnum():  # pyap may start inside a word
            start -= 1
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    kept, end = [], 0
    for start, stop in merged:
        kept.append(text[end:start] + "[ADDRESS]")
        end = stop
    return "".join(kept) + text[end:]


def redact(text: str) -> str:
    """Emails, payment card numbers (Luhn-checked), street addresses and phone numbers
    become placeholders. Idempotent: redacting redacted text changes nothing."""
    text = EMAIL.sub("[EMAIL]", text)
    text = CARD.sub(_card, text)
    text = redact_addresses(text)
    return PHONE.sub(_phone, text)
