"""Secret detectors: provider API keys and tokens, private key blocks, JWTs.

Formats follow the providers' documented prefixes (the same ones gitleaks and
detect-secrets use), written as bounded patterns so a stream can be scanned
with a finite hold-back window.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tollway.firewalls.detector import Detector, DetectorSpec

__all__ = ["PrivateKeyParams", "SPECS", "private_key"]

_B = r"(?<![A-Za-z0-9_-])"  # not in the middle of a token
_E = r"(?![A-Za-z0-9_-])"  # token ends here

_FIXED = [
    (
        "anthropic_key",
        rf"{_B}sk-ant-[A-Za-z0-9_-]{{20,200}}{_E}",
        "Anthropic API keys (sk-ant-…)",
    ),
    (
        "openai_key",
        rf"{_B}sk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{{20,200}}{_E}",
        "OpenAI API keys (sk-…, sk-proj-…)",
    ),
    (
        "aws_access_key",
        r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA|ASCA)"
        r"[A-Z0-9]{16}(?![A-Z0-9])",
        "AWS access key ids",
    ),
    (
        "aws_secret_key",
        r"(?<![A-Za-z0-9])(?i:aws_?secret_?access_?key|aws_?secret)"
        r"[\"']?[ \t]{0,4}[:=][ \t]{0,4}[\"']?"
        r"[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])",
        "AWS secret access keys next to their name",
    ),
    ("gcp_api_key", rf"{_B}AIza[0-9A-Za-z_-]{{35}}{_E}", "Google Cloud API keys"),
    (
        "gcp_service_account",
        r"\"private_key_id\"[ \t]{0,4}:[ \t]{0,4}\"[0-9a-f]{40}\"",
        "Google service-account key ids",
    ),
    (
        "azure_storage_key",
        r"(?<![A-Za-z0-9])(?i:AccountKey)=[A-Za-z0-9+/]{86}==",
        "Azure storage account keys",
    ),
    (
        "azure_client_secret",
        r"(?<![A-Za-z0-9_~.-])[A-Za-z0-9_~.-]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}(?![A-Za-z0-9_~.-])",
        "Azure AD client secrets",
    ),
    (
        "github_token",
        rf"{_B}(?:(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{{36}}|github_pat_[A-Za-z0-9_]{{82}}){_E}",
        "GitHub tokens (classic and fine-grained)",
    ),
    (
        "slack_token",
        rf"{_B}xox[abposr]-[0-9A-Za-z-]{{10,250}}{_E}"
        r"|(?<![A-Za-z0-9])https://hooks\.slack\.com/services/T[A-Z0-9]{8,12}/B[A-Z0-9]{8,12}/[A-Za-z0-9]{24}",
        "Slack tokens and webhook URLs",
    ),
    (
        "stripe_key",
        rf"{_B}(?:(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{{16,247}}|whsec_[0-9A-Za-z]{{32,64}}){_E}",
        "Stripe secret/restricted keys and webhook secrets",
    ),
    (
        "jwt",
        rf"{_B}eyJ[A-Za-z0-9_-]{{8,600}}\.eyJ[A-Za-z0-9_-]{{8,2000}}\.[A-Za-z0-9_-]{{0,700}}{_E}",
        "JSON web tokens",
    ),
]


class PrivateKeyParams(BaseModel):
    """Parameters of the private key detector."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_block_chars: int = Field(
        3800, ge=0, le=60000,
        description="longest key body redacted with its header; longer blocks lose only the "
        "header. This sets the hold-back window while a key block is streaming",
    )


def private_key(params: PrivateKeyParams) -> Detector:
    """PEM/OpenSSH private key blocks: the header, and the body through END when bounded."""
    kind = r"[A-Z0-9 ]{0,24}PRIVATE KEY(?: BLOCK)?-----"
    return Detector(
        "private_key",
        rf"-----BEGIN {kind}"
        rf"(?:[A-Za-z0-9+/=\s:,.-]{{0,{params.max_block_chars}}}?-----END {kind})?",
    )


SPECS = [DetectorSpec.fixed("secrets", Detector(n, p), d) for n, p, d in _FIXED] + [
    DetectorSpec("private_key", "secrets", "private key blocks (PEM, OpenSSH)", private_key,
                 PrivateKeyParams),
]
