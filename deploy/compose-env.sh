#!/usr/bin/env bash
# Write ./.env for `docker compose` with fresh random secrets, once: nothing is committed,
# and an existing .env is never overwritten (its seed signs the audit log: a new one would
# need new public keys everywhere). .env is in .gitignore.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -e .env ]]; then
  echo ".env exists: keeping it (delete it to generate new secrets)" >&2
  exit 0
fi
umask 077
{
  for name in CLICKHOUSE_PASSWORD KAFKA_ADMIN_PASSWORD KAFKA_WARDEN_PASSWORD WARDEN_REDACTION_KEY \
              WARDEN_QUERY_TOKEN WARDEN_AUDIT_SIGNING_KEY WARDEN_SIGNAL_KEY; do
    printf '%s=%s\n' "$name" "$(openssl rand -hex 32)"
  done
  printf 'WARDEN_OPERATOR_PUBLIC_KEYS=\n'
} > .env
echo "wrote .env (mode 600); print the public keys verifiers need with" >&2
echo "  WARDEN_AUDIT_SIGNING_KEY=<from .env> warden audit public-key" >&2
echo "  WARDEN_SIGNAL_KEY=<from .env> WARDEN_SIGNAL_KEY_NAME=warden-compose warden breaker public-key" >&2
