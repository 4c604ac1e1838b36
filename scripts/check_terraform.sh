#!/usr/bin/env bash
# Static checks for terraform/: formatting and checkov security policies.
# `terraform validate/plan` need the google provider (network), so CI relies on
# these plus tests/terraform/test_terraform_wiring.py. Exits non-zero on any failure.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

status=0

if ! command -v terraform >/dev/null 2>&1; then
    echo "ERROR: terraform not found on PATH (install Terraform >= 1.5: https://developer.hashicorp.com/terraform/install)" >&2
    exit 1
fi

echo "==> terraform fmt -check -recursive terraform/"
if ! terraform fmt -check -recursive -diff terraform/; then
    echo "FAIL: terraform files are not formatted; run: terraform fmt -recursive terraform/" >&2
    status=1
fi

# checkov lives in its own venv: its dependency pins conflict with the project's.
# --skip-download: use the bundled policies only (no call to the Prisma Cloud API;
# CI runners and dev sandboxes may have no outbound network).
checkov_venv="$repo_root/.venv-checkov"
if [[ ! -x "$checkov_venv/bin/checkov" ]]; then
    echo "==> installing checkov into .venv-checkov"
    python3 -m venv "$checkov_venv"
    "$checkov_venv/bin/pip" install --quiet checkov
fi

echo "==> checkov -d terraform --framework terraform"
if ! "$checkov_venv/bin/checkov" -d terraform --framework terraform --quiet --compact --skip-download; then
    echo "FAIL: checkov reported failed checks (fix them, or skip with #checkov:skip=CKV_ID:reason on the resource)" >&2
    status=1
fi

if [[ $status -eq 0 ]]; then
    echo "OK: terraform fmt and checkov passed"
fi
exit $status
