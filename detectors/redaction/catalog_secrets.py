"""Credential patterns: provider key formats, PEM keys, passwords and keyword-anchored tokens.

Provider formats follow the public rule sets of gitleaks (``config/gitleaks.toml``) and
detect-secrets' plugins, narrowed by a placeholder filter (``sk-...your-key-here...``,
``<your secret>``, ``${TOKEN}``, ``********``). Generic tokens are accepted only right
after a credential keyword *and* when they look machine-generated (entropy, length,
character classes), so commit hashes, digests, UUIDs and trace ids pass untouched.

>>> from detectors.redaction.engine import PatternRecognizer, resolve_overlaps
>>> rec = PatternRecognizer("secrets", SECRET_SPECS)
>>> [s.entity for s in resolve_overlaps(rec.find("export TOKEN=ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"))]
['GITHUB_TOKEN']
>>> rec.find("OPENAI_API_KEY=sk-...your-key-here...  commit 70c4fc35de8b69c45f97d1130f9eb94bf74e2c3f")
[]
"""

from __future__ import annotations

from .engine import PatternSpec
from .validators import (
    basic_auth_valid,
    is_uuid,
    jwt_valid,
    looks_like_placeholder,
    password_like,
    token_is_random,
)

# Overlaps: a PEM block beats a provider format beats a password keyword beats PII (2)
# beats a generic high-entropy token.
KEY_BLOCK, PROVIDER, PASSWORD_PRIORITY, GENERIC = 5, 4, 3, 1
_TOKEN_LEFT = r"[A-Za-z0-9_-]"
_TOKEN_END = r"[A-Za-z0-9_-]"
_COMMON_PASSWORDS = frozenset(
    {"password", "passwd", "pass", "secret", "changeme", "pwd", "admin", "root", "none", "null",
     "required", "optional", "hidden", "redacted", "masked", "incorrect", "invalid", "wrong"}
)


def _real(value: str) -> bool:
    return not looks_like_placeholder(value)


def _random_token(value: str) -> bool:
    return token_is_random(value) and not is_uuid(value)


def _password_value(value: str) -> tuple[int, int] | None:
    """Trim sentence punctuation off a password candidate, then check it looks typed."""
    end = len(value)
    while end and value[end - 1] in ".,;:)]}":
        end -= 1
    core = value[:end]
    if core.lower() in _COMMON_PASSWORDS or not password_like(core):
        return None
    return 0, end


def _url_password(value: str) -> bool:
    return value.lower() not in _COMMON_PASSWORDS and not looks_like_placeholder(value)


def _generic_value(value: str) -> tuple[int, int] | None:
    end = len(value)
    while end and value[end - 1] in ".,":
        end -= 1
    return (0, end) if _random_token(value[:end]) else None


def literal_prefix(pattern: str) -> str:
    """The pattern up to its first top-level character class: a cheap RE2-set trigger.

    >>> literal_prefix(r"(?:ghp|gho)_[A-Za-z0-9]{36}")
    '(?:ghp|gho)_'
    """
    depth = 0
    for i, ch in enumerate(pattern):
        escaped = i > 0 and pattern[i - 1] == "\\"
        if ch == "(" and not escaped:
            depth += 1
        elif ch == ")" and not escaped:
            depth -= 1
        elif ch == "[" and depth == 0 and not escaped:
            return pattern[:i]
    return pattern


# Triggers for formats whose pattern starts with a character class, not a literal.
_TRIGGERS = {
    "MAILCHIMP_API_KEY": r"-us[0-9]",
    "DIGITALOCEAN_TOKEN": r"_v1_",
    "DISCORD_BOT_TOKEN": r"\.[A-Za-z0-9_-]{6}\.",
    "TELEGRAM_BOT_TOKEN": r"[0-9]:AA",
    "AZURE_AD_CLIENT_SECRET": r"[0-9]Q~",
    "GRAFANA_TOKEN": r"gl(?:sa|c)_",
}


# Left boundaries that differ from a token boundary (Telegram tokens follow ".../bot").
_LEFTS = {"TELEGRAM_BOT_TOKEN": r"[0-9:]"}


def _provider(entity: str, pattern: str, **kw) -> PatternSpec:  # noqa: ANN003
    kw.setdefault("validate", _real)
    kw.setdefault("left", _LEFTS.get(entity, _TOKEN_LEFT))
    kw.setdefault("right", _TOKEN_END)
    kw.setdefault("priority", PROVIDER)
    kw.setdefault("trigger", _TRIGGERS.get(entity) or literal_prefix(pattern))
    return PatternSpec(entity, pattern, category="secret", **kw)


# (entity, pattern) for formats that are a literal prefix plus a fixed alphabet.
_PREFIXED: tuple[tuple[str, str], ...] = (
    ("AWS_ACCESS_KEY_ID", r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA|A3T[A-Z0-9])[A-Z0-9]{16}"),
    ("GITHUB_TOKEN", r"(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}"),
    ("GITHUB_FINE_GRAINED_TOKEN", r"github_pat_[A-Za-z0-9_]{50,255}"),
    ("GITLAB_TOKEN", r"gl(?:pat|ptt|dt|rt|cbt|oas|soat|imt|ft|feed|agent)-[A-Za-z0-9_-]{20,64}(?:\.[A-Za-z0-9_-]{2,40}){0,2}"),
    ("GITLAB_TOKEN", r"GR1348941[A-Za-z0-9_-]{20}"),
    ("SLACK_TOKEN", r"xox[abposre]-[A-Za-z0-9-]{10,250}"),
    ("SLACK_TOKEN", r"xoxe\.xox[bp]-[0-9]-[A-Za-z0-9-]{40,250}"),
    ("SLACK_TOKEN", r"xapp-[0-9]-[A-Z0-9]{6,}-[0-9]{6,}-[A-Za-z0-9]{20,}"),
    ("SLACK_WEBHOOK", r"https?://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_-]{20,200}"),
    ("STRIPE_KEY", r"(?:sk|rk)_(?:live|test|prod)_[A-Za-z0-9]{10,247}"),
    ("STRIPE_KEY", r"whsec_[A-Za-z0-9]{24,64}"),
    ("OPENAI_API_KEY", r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,250}"),
    ("ANTHROPIC_API_KEY", r"sk-ant-(?:api|admin|oat|sid)[0-9]{2}-[A-Za-z0-9_-]{20,200}"),
    ("GOOGLE_API_KEY", r"AIza[0-9A-Za-z_-]{35}"),
    ("GCP_OAUTH_CLIENT_SECRET", r"GOCSPX-[A-Za-z0-9_-]{28}"),
    ("GOOGLE_OAUTH_TOKEN", r"ya29\.[0-9A-Za-z_-]{20,1000}"),
    ("SENDGRID_API_KEY", r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}"),
    ("NPM_TOKEN", r"npm_[A-Za-z0-9]{36}"),
    ("TWILIO_API_KEY", r"SK[0-9a-fA-F]{32}"),
    ("MAILGUN_API_KEY", r"key-[0-9a-f]{32}"),
    ("MAILCHIMP_API_KEY", r"[0-9a-f]{32}-us[0-9]{1,2}"),
    ("HUGGINGFACE_TOKEN", r"hf_[A-Za-z0-9]{30,40}"),
    ("SHOPIFY_TOKEN", r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"),
    ("SQUARE_TOKEN", r"(?:EAAA[A-Za-z0-9_-]{56,64}|sq0atp-[A-Za-z0-9_-]{22}|sq0csp-[A-Za-z0-9_-]{43})"),
    ("ATLASSIAN_API_TOKEN", r"ATATT3[A-Za-z0-9_=-]{180,200}"),
    ("DIGITALOCEAN_TOKEN", r"do[opr]_v1_[a-f0-9]{64}"),
    ("HEROKU_API_KEY", r"HRKU-[A-Za-z0-9_-]{60}"),
    ("PYPI_TOKEN", r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,300}"),
    ("DATABRICKS_TOKEN", r"dapi[a-f0-9]{32}(?:-[0-9]+)?"),
    ("DISCORD_BOT_TOKEN", r"[MNO][A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38}"),
    ("DISCORD_WEBHOOK", r"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/[A-Za-z0-9_-]{60,68}"),
    ("TELEGRAM_BOT_TOKEN", r"[0-9]{8,10}:AA[A-Za-z0-9_-]{33}"),
    ("NEWRELIC_API_KEY", r"NRAK-[A-Z0-9]{27}"),
    ("GROQ_API_KEY", r"gsk_[A-Za-z0-9]{52}"),
    ("REPLICATE_API_TOKEN", r"r8_[A-Za-z0-9]{37}"),
    ("VAULT_TOKEN", r"hvs\.[A-Za-z0-9_-]{24,250}"),
    ("DOPPLER_TOKEN", r"dp\.(?:pt|st|ct|sa|scim|audit)\.[A-Za-z0-9]{40,44}"),
    ("LINEAR_API_KEY", r"lin_api_[A-Za-z0-9]{40}"),
    ("POSTMAN_API_KEY", r"PMAK-[a-f0-9]{24}-[a-f0-9]{34}"),
    ("GRAFANA_TOKEN", r"(?:glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}|glc_[A-Za-z0-9+/]{32,400}={0,2})"),
    ("SENTRY_TOKEN", r"sntry[su]_[A-Za-z0-9+/=_-]{40,300}"),
    ("AGE_SECRET_KEY", r"AGE-SECRET-KEY-1[0-9A-Z]{58}"),
    ("BREVO_API_KEY", r"xkeysib-[a-f0-9]{64}-[A-Za-z0-9]{16}"),
    ("DROPBOX_TOKEN", r"sl\.[A-Za-z0-9_-]{130,200}"),
    ("ALIBABA_ACCESS_KEY_ID", r"LTAI[A-Za-z0-9]{20}"),
    ("PLANETSCALE_TOKEN", r"pscale_(?:tkn|pw|oauth)_[A-Za-z0-9=._-]{32,64}"),
    ("TAILSCALE_KEY", r"tskey-[a-z]+-[A-Za-z0-9]{10,}-[A-Za-z0-9]{20,}"),
    ("AZURE_AD_CLIENT_SECRET", r"[A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}"),
)

_ASSIGN = r"[\"']?\s*(?:=|:|=>|:=|,)\s*[\"']?"
_GENERIC_KEYWORDS = (
    r"secret|token|api[_.-]?key|apikey|access[_.-]?key|auth[_.-]?key|private[_.-]?key"
    r"|signing[_.-]?key|bearer|credential|session[_.-]?key|encryption[_.-]?key|master[_.-]?key"
)

SECRET_SPECS: tuple[PatternSpec, ...] = (
    *(_provider(entity, pattern) for entity, pattern in _PREFIXED),
    _provider("OPENAI_API_KEY", r"sk-[A-Za-z0-9_-]{0,100}T3BlbkFJ[A-Za-z0-9_-]{0,100}", trigger="T3BlbkFJ"),
    _provider("OPENAI_API_KEY", r"sk-[A-Za-z0-9]{32,64}", validate=_random_token, priority=2),
    _provider("ANTHROPIC_API_KEY", r"sk-ant-[A-Za-z0-9_-]{32,200}", validate=_random_token),
    _provider("JWT", r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*", validate=jwt_valid),
    PatternSpec(
        "AWS_SECRET_ACCESS_KEY",
        r"(?i:aws_?secret_?(?:access_?)?key|secret_?access_?key|aws_?secret)" + _ASSIGN
        + r"(?P<value>[A-Za-z0-9/+]{40})", right=r"[A-Za-z0-9/+=]",
        trigger=r"(?i:secret_?access|aws_?secret)", validate=_real, priority=PROVIDER, category="secret",
    ),
    PatternSpec(
        "AZURE_STORAGE_KEY", r"(?i:AccountKey)=(?P<value>[A-Za-z0-9+/]{86}==)",
        trigger=r"(?i:AccountKey)=", validate=_real, priority=PROVIDER, category="secret",
    ),
    PatternSpec(
        "GCP_SERVICE_ACCOUNT_KEY", r"\"private_key_id\"\s*:\s*\"(?P<value>[a-f0-9]{40})\"",
        trigger=r"private_key_id", priority=PROVIDER, category="secret",
    ),
    PatternSpec(
        "HEROKU_API_KEY",
        r"(?i:heroku)[^\n]{0,40}?(?P<value>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}"
        r"-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})", right=r"[0-9a-fA-F-]",
        trigger=r"(?i:heroku)", priority=PROVIDER, category="secret",
    ),
    # PEM blocks: the whole block (header to footer); a truncated block up to its last body line.
    PatternSpec(
        "PRIVATE_KEY",
        r"-----BEGIN[A-Z0-9 ]{0,30}PRIVATE KEY(?: BLOCK)?-----[\s\S]{0,16384}?"
        r"-----END[A-Z0-9 ]{0,30}PRIVATE KEY(?: BLOCK)?-----",
        trigger=r"-----BEGIN[A-Z0-9 ]{0,30}PRIVATE KEY", priority=KEY_BLOCK, category="secret",
    ),
    PatternSpec(
        "PRIVATE_KEY",
        r"-----BEGIN[A-Z0-9 ]{0,30}PRIVATE KEY(?: BLOCK)?-----(?:\\[rn]|\s)*"
        r"(?:[A-Za-z0-9+/=]|\\[rn]|\s){32,16384}",
        trigger=r"-----BEGIN[A-Z0-9 ]{0,30}PRIVATE KEY", priority=KEY_BLOCK - 1, category="secret",
    ),
    # Passwords: in URLs / connection strings (up to the last @ before the host) ...
    PatternSpec(
        "PASSWORD",
        r"[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s:@/?#'\"]{0,128}:(?P<value>[^\s/'\"]{1,256})"
        r"@(?=[A-Za-z0-9\[][A-Za-z0-9.\-\[\]:]*(?:[/\s'\"?#,;)]|$))",
        trigger=r"://[^\s:@/]*:[^\s/]*@", validate=_url_password,
        priority=PASSWORD_PRIORITY, category="secret",
    ),
    # ... on command lines (mysql -p'secret', --password=, PGPASSWORD=) ...
    PatternSpec(
        "PASSWORD",
        r"(?:mysql|mysqldump|mariadb|mysqladmin)\b[^\n]{0,200}?\s-p['\"]?(?P<value>[^\s'\"]{1,128})",
        trigger=r"(?:mysql|mysqldump|mariadb|mysqladmin)\b",
        refine=_password_value, priority=PASSWORD_PRIORITY, category="secret",
    ),
    # ... in key=value / JSON / YAML (password: x, "db_password": "x") ...
    PatternSpec(
        "PASSWORD",
        r"(?i:pass(?:word|wd|phrase|code)?|pwd|pw)\b[\"']?\s*(?:=|:|=>|:=)\s*"
        r"[\"'`]?(?P<value>[^\s\"'`,;&]{4,128})",
        trigger=r"(?i:pass|pw)", refine=_password_value, engine="anchored",
        priority=PASSWORD_PRIORITY, category="secret",
    ),
    # ... quoted, where the value runs to its closing quote ("password": "Tr0ub4dor&3x!") ...
    PatternSpec(
        "PASSWORD",
        r"(?i:pass(?:word|wd|phrase|code)?|pwd|pw)\b[\"']?\s*(?:=|:|=>|:=)\s*"
        r"[\"'`](?P<value>[^\"'`\n\\]{4,128})[\"'`]",
        trigger=r"(?i:pass|pw)", refine=_password_value, engine="anchored",
        priority=PASSWORD_PRIORITY, category="secret",
    ),
    # ... and in prose ("the wifi password for the office is tiger998#falcon").
    PatternSpec(
        "PASSWORD",
        r"(?i:password|passcode|passphrase|pwd)(?:\s+(?i:for|of|to|on)\s+(?:(?i:the|my|our|your)\s+)?"
        r"[\w-]+(?:\s+[\w-]+)?)?\s+(?i:is|was|=)\s*:?\s*[\"'`]?(?P<value>[^\s\"'`]{4,128})",
        trigger=r"(?i:pass|pw)", refine=_password_value, engine="anchored",
        priority=PASSWORD_PRIORITY, category="secret",
    ),
    PatternSpec(
        "PASSWORD", r"(?i:authorization)[\"']?\s*[:=]\s*[\"']?(?i:basic)\s+(?P<value>[A-Za-z0-9+/]{8,}={0,2})",
        trigger=r"(?i:basic)", validate=basic_auth_valid, priority=PASSWORD_PRIORITY, category="secret",
    ),
    # Random-looking tokens right after a credential keyword (client_secret, API_TOKEN, Bearer).
    PatternSpec(
        "GENERIC_SECRET",
        rf"(?i:{_GENERIC_KEYWORDS})[A-Za-z0-9_.-]{{0,40}}(?:[\"']?\s*(?:=|:|=>|:=)|\s)\s*[\"']?"
        r"(?P<value>[A-Za-z0-9_\-+/=.~]{16,512})", right=r"[A-Za-z0-9_\-+/=.~]",
        trigger=rf"(?i:{_GENERIC_KEYWORDS})", refine=_generic_value, engine="anchored", priority=GENERIC, category="secret",
    ),
)
