"""PII detectors: email, phone, payment card, IBAN, US SSN, IP address.

Candidates come from bounded regexes (needed for streaming); checksums and
number plans come from maintained libraries: ``python-stdnum`` (Luhn, IBAN
country formats and mod-97, SSN area/group rules) and ``phonenumbers`` (lite),
each imported the first time a candidate needs it (together ≈ 3 MiB a process
that never sees one does not hold).
"""

from __future__ import annotations

import functools
import ipaddress
from types import ModuleType, SimpleNamespace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tollway.firewalls.detector import Detector, DetectorSpec, shrink_at

__all__ = [
    "CREDIT_CARD",
    "EMAIL",
    "IBAN",
    "IP_ADDRESS",
    "SPECS",
    "US_SSN",
    "PhoneParams",
    "is_card_number",
    "phone",
]

EMAIL = Detector(
    "email",
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}"
    r"(?:\.[A-Za-z0-9-]{1,63}){0,4}\.[A-Za-z]{2,24}(?![A-Za-z0-9-])",
)

_CARD_PREFIXES = ("4", "5", "2", "34", "37", "36", "38", "35", "6")


@functools.cache
def _stdnum() -> Any:
    """python-stdnum's validators, imported on first use."""
    from stdnum import iban, luhn
    from stdnum.us import ssn

    return SimpleNamespace(iban=iban, luhn=luhn, ssn=ssn)


@functools.cache
def _phonenumbers() -> ModuleType:
    """phonenumbers, imported on first use."""
    import phonenumbers

    return phonenumbers


def is_card_number(candidate: str) -> bool:
    """13–19 digits, a known issuer prefix and a valid Luhn checksum."""
    digits = candidate.replace(" ", "").replace("-", "")
    return (
        13 <= len(digits) <= 19
        and digits.startswith(_CARD_PREFIXES)
        and _stdnum().luhn.is_valid(digits)
    )


CREDIT_CARD = Detector(
    "credit_card",
    r"(?<![A-Za-z0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])",
    lambda c: shrink_at(c, is_card_number, " -"),
)


def _is_iban(candidate: str) -> bool:
    return len(candidate.replace(" ", "")) >= 15 and bool(_stdnum().iban.is_valid(candidate))


IBAN = Detector(
    "iban",
    r"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])",
    lambda c: shrink_at(c, _is_iban, " "),
)

US_SSN = Detector(
    "us_ssn",
    r"(?<![A-Za-z0-9-])(?:[0-9]{3}-[0-9]{2}-[0-9]{4}|[0-9]{3} [0-9]{2} [0-9]{4})(?![0-9-])",
    lambda c: len(c) if _stdnum().ssn.is_valid(c) else 0,
)

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"


def _is_ipv6(candidate: str) -> bool:
    if sum(ch not in ":" for ch in candidate) < 3:
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


IP_ADDRESS = Detector(
    "ip_address",
    rf"(?<![A-Za-z0-9.])(?:{_OCTET}\.){{3}}{_OCTET}(?![0-9]|\.[0-9])"
    r"|(?<![0-9A-Za-z:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Za-z:])",
    lambda c: len(c) if "." in c or _is_ipv6(c) else 0,
)


class PhoneParams(BaseModel):
    """Parameters of the phone detector."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    region: str = Field("US", description="region assumed for numbers without +country code")


def phone(params: PhoneParams) -> Detector:
    """Phone numbers: a permissive bounded candidate, validated by phonenumbers."""
    region = params.region

    def valid(text: str) -> bool:
        if sum(ch.isdigit() for ch in text) < 7:
            return False
        lib = _phonenumbers()
        try:
            number = lib.parse(text, region)
        except lib.NumberParseException:
            return False
        return bool(lib.is_valid_number(number))

    return Detector(
        "phone",
        r"(?<![\w+])(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{1,4}\)[ .-]?)?"
        r"[0-9]{2,12}(?:[ .-][0-9]{1,6}){0,5}(?![\w])",
        lambda c: shrink_at(c, valid, " .-"),
    )


SPECS = [
    DetectorSpec.fixed("pii", CREDIT_CARD, "payment card numbers passing the Luhn check"),
    DetectorSpec.fixed("pii", IBAN, "IBANs with a valid country format and mod-97 checksum"),
    DetectorSpec.fixed("pii", US_SSN, "US social security numbers (area/group/serial rules)"),
    DetectorSpec("phone", "pii", "phone numbers valid in the phonenumbers metadata", phone,
                 PhoneParams),
    DetectorSpec.fixed("pii", EMAIL, "email addresses"),
    DetectorSpec.fixed("pii", IP_ADDRESS, "IPv4 and IPv6 addresses"),
]
