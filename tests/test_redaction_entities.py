"""Each entity type: true positives in realistic carriers, and look-alikes that must pass."""

from __future__ import annotations

import base64
import random
import string

import pytest

from detectors.redaction import RedactionPolicy, Redactor, builtin_entities
from tests.redaction_canaries import iban_complete, luhn_complete

_RNG = random.Random(20240611)


def _tok(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(_RNG.choice(alphabet) for _ in range(n))


def _hex(n: int) -> str:
    return _tok(n, "0123456789abcdef")


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor(RedactionPolicy(version="test"))


def _found(redactor: Redactor, text: str) -> list[tuple[str, str]]:
    return [(s.entity, text[s.start : s.end]) for s in redactor.find(text)]


PII_POSITIVES = [
    ("EMAIL_ADDRESS", "contact {v} today", "ann.lee+tag@mail.example.co.uk"),
    ("EMAIL_ADDRESS", "user_email={v} status=403", "kaitlyn_w@stevens.org"),
    ("PHONE_NUMBER", "call {v} after 5", "(415) 555-2671"),
    ("PHONE_NUMBER", "Desk: {v}.", "+44 20 7946 0958"),
    ("PHONE_NUMBER", "reach me at {v} please", "415.555.2671 x204"),
    ("PHONE_NUMBER", "Mobile: {v}", "07700 900123"),
    ("PHONE_NUMBER", "whatsapp {v}", "+14155552671"),
    ("PHONE_NUMBER", "phone {v}", "4155552671"),
    ("PHONE_NUMBER", "Fax: {v}", "001-524-995-9862x6930"),
    ("CREDIT_CARD", "card {v} expires 05/28", "4111 1111 1111 1111"),
    ("CREDIT_CARD", "pay with {v}", "5500-0000-0000-0004"),
    ("CREDIT_CARD", "amex {v}", "378282246310005"),
    ("CREDIT_CARD", "card 6011111111111117 was charged twice", "6011111111111117"),
    ("US_SSN", "my SSN {v} on the form", "536-22-1234"),
    ("US_SSN", "SSN: {v}.", "536221234"),
    ("IBAN_CODE", "wire to IBAN {v} EUR", "GB82 WEST 1234 5698 7654 32"),
    ("IBAN_CODE", "IBAN {v}, account holder", "DE89370400440532013000"),
    ("IP_ADDRESS", "client_ip={v} status=403", "192.168.10.25"),
    ("IP_ADDRESS", "from {v}.", "2001:db8:85a3::8a2e:370:7334"),
    ("IP_ADDRESS", "peer {v} dropped", "fe80:0:0:0:202:b3ff:fe1e:8329"),
    ("POSTAL_CODE", "London {v}, UK", "SW1A 1AA"),
    ("POSTAL_CODE", "Toronto, ON {v}", "M5V 3L9"),
    ("POSTAL_CODE", "Denver, CO {v}", "80202"),
    ("STREET_ADDRESS", "lives at {v} now", "1600 Pennsylvania Avenue, Apt 4"),
    ("STREET_ADDRESS", "ship to {v}", "PSC 3294, Box 9168"),
    ("DATE_OF_BIRTH", "date of birth: {v}", "04/12/1987"),
    ("DATE_OF_BIRTH", "DOB {v}", "1987-04-12"),
    ("DATE_OF_BIRTH", "she was born on {v} in Leeds", "March 3, 1990"),
    ("PASSPORT", "passport number {v}", "X12345678"),
    ("DRIVER_LICENSE", "driver's license {v}", "D1234-5678-9012"),
]


@pytest.mark.parametrize(("entity", "carrier", "value"), PII_POSITIVES)
def test_pii_true_positive(redactor: Redactor, entity: str, carrier: str, value: str) -> None:
    assert (entity, value) in _found(redactor, carrier.format(v=value))


def _jwt() -> str:
    head = base64.urlsafe_b64encode(b'{"alg":"RS256","typ":"JWT"}').decode().rstrip("=")
    body = base64.urlsafe_b64encode(b'{"sub":"42","name":"A B"}').decode().rstrip("=")
    return f"{head}.{body}.{_tok(43)}"


SECRET_POSITIVES = [
    ("AWS_ACCESS_KEY_ID", "export KEY='{v}'", "AKIA" + _tok(16, string.ascii_uppercase + "234567")),
    ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key = {v}\n", _tok(30) + "/" + _tok(9)),
    ("GITHUB_TOKEN", "git clone https://{v}@github.com/o/r", "ghp_" + _tok(36)),
    ("GITHUB_FINE_GRAINED_TOKEN", "token: {v}", "github_pat_" + _tok(22) + "_" + _tok(59)),
    ("GITLAB_TOKEN", "-H 'PRIVATE-TOKEN: {v}'", "glpat-" + _tok(20)),
    ("SLACK_TOKEN", "SLACK={v}", f"xoxb-{_tok(12, string.digits)}-{_tok(13, string.digits)}-{_tok(24)}"),
    ("SLACK_WEBHOOK", "post to {v} now", f"https://hooks.slack.com/services/T{_tok(8).upper()}/B{_tok(10).upper()}/{_tok(24)}"),
    ("STRIPE_KEY", "stripe.api_key = '{v}'", "sk_live_" + _tok(24)),
    ("OPENAI_API_KEY", "OPENAI_API_KEY={v}", "sk-proj-" + _tok(48) + "T3BlbkFJ" + _tok(20)),
    ("OPENAI_API_KEY", "key {v}", "sk-" + _tok(20) + "T3BlbkFJ" + _tok(20)),
    ("ANTHROPIC_API_KEY", "x-api-key: {v}", "sk-ant-api03-" + _tok(93) + "AA"),
    ("GOOGLE_API_KEY", "?key={v}&q=1", "AIza" + _tok(35)),
    ("GCP_SERVICE_ACCOUNT_KEY", '{{"type": "service_account", "private_key_id": "{v}"}}', _hex(40)),
    ("SENDGRID_API_KEY", "SENDGRID={v}", f"SG.{_tok(22)}.{_tok(43)}"),
    ("NPM_TOKEN", "//registry.npmjs.org/:_authToken={v}", "npm_" + _tok(36)),
    ("JWT", "Authorization: Bearer {v}", _jwt()),
    ("PRIVATE_KEY", "{v}\n", "-----BEGIN EC PRIVATE KEY-----\n" + _tok(64) + "\n" + _tok(40) + "\n-----END EC PRIVATE KEY-----"),
    ("PASSWORD", "DATABASE_URL=postgres://app:{v}@db.internal:5432/x", "Summer2089@falcon"),
    ("PASSWORD", "mysql -h db -u admin -p'{v}' shop", "tiger8606@winter"),
    ("PASSWORD", "login failed for user=svc password={v} attempts=3", "5j9JXo2Y0VuO_p"),
    ("PASSWORD", "The wifi password for the office is {v}, thanks", "tiger998#falcon"),
    ("PASSWORD", "Authorization: Basic {v}", base64.b64encode(b"admin:S3cr3t!pw").decode()),
    ("GENERIC_SECRET", '{{"client_id": "web", "client_secret": "{v}"}}', _tok(32)),
    ("GENERIC_SECRET", "webhook signing secret: {v}", _hex(40)),
    ("GENERIC_SECRET", "Authorization: Bearer {v}", _tok(40)),
    ("TWILIO_API_KEY", "TWILIO_KEY={v}", "SK" + _hex(32)),
    ("MAILGUN_API_KEY", "api:{v}", "key-" + _hex(32)),
    ("HUGGINGFACE_TOKEN", "HF_TOKEN={v}", "hf_" + _tok(34)),
    ("AZURE_STORAGE_KEY", "AccountName=a;AccountKey={v};Endpoint", _tok(86, string.ascii_letters + "+/") + "=="),
    ("SHOPIFY_TOKEN", "X-Shopify-Access-Token: {v}", "shpat_" + _hex(32)),
    ("SQUARE_TOKEN", "square {v}", "sq0atp-" + _tok(22)),
    ("DIGITALOCEAN_TOKEN", "DO={v}", "dop_v1_" + _hex(64)),
    ("HEROKU_API_KEY", "HEROKU_API_KEY={v}", "3f2a9c1e-8b7d-4e6f-9a1b-2c3d4e5f6a7b"),
    ("PYPI_TOKEN", "password = {v}", "pypi-AgEIcHlwaS5vcmc" + _tok(60)),
    ("DATABRICKS_TOKEN", "token={v}", "dapi" + _hex(32)),
    ("DISCORD_WEBHOOK", "hook {v}", f"https://discord.com/api/webhooks/{_tok(18, string.digits)}/{_tok(68)}"),
    ("TELEGRAM_BOT_TOKEN", "bot{v}/sendMessage", f"{_tok(10, string.digits)}:AA{_tok(33)}"),
    ("ATLASSIAN_API_TOKEN", "jira {v}", "ATATT3" + _tok(186)),
]


@pytest.mark.parametrize(("entity", "carrier", "value"), SECRET_POSITIVES, ids=[p[0] + str(i) for i, p in enumerate(SECRET_POSITIVES)])
def test_secret_true_positive(redactor: Redactor, entity: str, carrier: str, value: str) -> None:
    assert (entity, value) in _found(redactor, carrier.format(v=value))


def _luhn_invalid(prefix: str) -> str:
    valid = luhn_complete(prefix + "0" * (15 - len(prefix)))
    return valid[:-1] + str((int(valid[-1]) + 1) % 10)


NEGATIVES = [
    f"Order 89528033, 16-digit order id {_luhn_invalid('4539')} failed Luhn",
    f"Tracking number {luhn_complete('4000103784242')[:15] + luhn_complete('400010378424204')[-1]} shows delivered",
    "invalid IBAN GB82 WEST 1234 5698 7654 33 rejected",
    "upgraded to version 1.2.3.4 yesterday; also v10.0.0.1 and release 2.0.0.1",
    "numpy==1.26.4.1 and build 4.3.2.1",
    "dotted 1.2.3.4.5 is not an address, nor 256.1.1.1",
    "sha256:47b74c735f849d8d11821628e5415219f3ca91e947b1f37b1e6126457a217807  model.safetensors",
    "Cherry-pick commit 70c4fc35de8b69c45f97d1130f9eb94bf74e2c3f onto the release branch.",
    "request_id=319710e1-ecfc-451f-bca6-a4f7706455d1 status=200 bytes=96829",
    "trace_id=c2ea3cccad2389f2d6407f532596ce25 span_id=9a526815b1c15d16",
    "OPENAI_API_KEY=sk-...your-key-here...  # set this before running",
    "Set AWS_ACCESS_KEY_ID=<your access key id> and AWS_SECRET_ACCESS_KEY=<your secret>.",
    "Authorization: Bearer ${GITHUB_TOKEN}",
    'api_key = os.environ["STRIPE_API_KEY"]  # never hard-code keys',
    "password: ********  (hidden by the form)",
    "the AWS docs use AKIAIOSFODNN7EXAMPLE as a sample",
    "The token budget is 25k; usage so far 78309 tokens.",
    "the password is incorrect, please retry",
    "SSNs like 000-12-3456 or 666-12-3456 or 912-12-3456 are never issued",
    "paid $1,234.56 on 2024-01-15 at 12:30:45, latency 1234 ms, p99 8123456 us",
    "mac 00:1a:2b:3c:4d:5e and time 10:30:00",
    "see section 3.2.1 and figure 12.4",
    "git@github.com:org/repo.git",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_look_alikes_are_not_found(redactor: Redactor, text: str) -> None:
    assert _found(redactor, text) == []


def test_base64_image_data_is_not_a_secret(redactor: Redactor) -> None:
    # random base64 with provider-like substrings planted inside the image payload
    payload = _tok(40, string.ascii_letters + "+/") + "AIza" + _tok(35) + "AKIA" + _tok(16, string.ascii_uppercase)
    text = f'<img src="data:image/png;base64,iVBORw0KGgo{payload}=">'
    assert _found(redactor, text) == []


def test_canonical_shapes_need_validators(redactor: Redactor) -> None:
    card = luhn_complete("4" + "53" + "1" * 12)
    assert _found(redactor, f"card {card}") == [("CREDIT_CARD", card)]
    assert _found(redactor, f"card {card[:-1]}{(int(card[-1]) + 1) % 10}") == []
    iban = iban_complete("FR", "2004101005" + "0500013M02606")
    assert _found(redactor, f"IBAN {iban}") == [("IBAN_CODE", iban)]


def test_names_are_not_claimed_by_patterns() -> None:
    assert "PERSON" not in builtin_entities()
