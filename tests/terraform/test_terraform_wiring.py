"""Static wiring tests for terraform/*.tf.

`terraform validate/plan` need the google provider, which CI cannot download, so
these tests parse the HCL with python-hcl2 and assert how the resources are
wired together: who may invoke the function, which identity it runs as, which
secrets it can read, what the scheduler calls, and what we alert on.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest

TF_DIR = Path(__file__).resolve().parents[2] / "terraform"

FUNCTION = "google_cloudfunctions2_function.reconciler"
FUNCTION_SA = "google_service_account.function"
INVOKER_SA = "google_service_account.invoker"
BUILD_SA = "google_service_account.build"

# env var the app reads -> google_secret_manager_secret resource name
SECRET_ENV = {
    "ALPACA_API_KEY": "alpaca_api_key",
    "ALPACA_SECRET_KEY": "alpaca_secret_key",
    "DISCORD_WEBHOOK_URL": "discord_webhook_url",
}

Body = dict[str, Any]


# --------------------------------------------------------------------------- helpers


def _unquote(text: str) -> str:
    """python-hcl2 >= 8 keeps the quotes of string literals and labels; older versions don't."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1]
    return text


def _normalise(value: Any) -> Any:
    """Strip literal quotes and drop python-hcl2 metadata keys (__is_block__, __comments__...)."""
    if isinstance(value, dict):
        return {
            _unquote(str(key)): _normalise(item)
            for key, item in value.items()
            if not (str(key).startswith("__") and str(key).endswith("__"))
        }
    if isinstance(value, list):
        return [_normalise(item) for item in value]
    if isinstance(value, str):
        return _unquote(value)
    return value


def _ref(value: Any) -> str:
    """`${a.b.c}` -> `a.b.c` when the whole value is exactly one interpolation."""
    assert isinstance(value, str), f"expected an expression string, got {value!r}"
    match = re.fullmatch(r"\$\{([^{}]*)\}", value)
    assert match is not None, f"expected a single reference like ${{x.y}}, got {value!r}"
    return match.group(1).strip()


def _text(value: Any) -> str:
    """A string with HCL escapes for quotes undone, for substring checks on filters."""
    assert isinstance(value, str), f"expected a string, got {value!r}"
    return value.replace('\\"', '"')


def _tf_files() -> list[Path]:
    files = sorted(TF_DIR.glob("*.tf"))
    assert files, f"no .tf files found in {TF_DIR}"
    return files


@cache
def _parsed() -> tuple[Body, ...]:
    docs = []
    for path in _tf_files():
        with path.open(encoding="utf-8") as handle:
            docs.append(_normalise(hcl2.load(handle)))
    return tuple(docs)


def _top_level(kind: str) -> Iterator[Body]:
    for doc in _parsed():
        yield from doc.get(kind, [])


def resources(rtype: str) -> dict[str, Body]:
    found: dict[str, Body] = {}
    for entry in _top_level("resource"):
        for type_name, by_name in entry.items():
            if type_name != rtype:
                continue
            for name, body in by_name.items():
                assert name not in found, f"duplicate resource {rtype}.{name}"
                found[name] = body
    return found


def resource(address: str) -> Body:
    rtype, name = address.split(".")
    found = resources(rtype)
    assert name in found, f"resource {address} not found; {rtype} has {sorted(found)}"
    return found[name]


def variables() -> dict[str, Body]:
    found: dict[str, Body] = {}
    for entry in _top_level("variable"):
        found.update(entry)
    return found


def locals_() -> Body:
    found: Body = {}
    for entry in _top_level("locals"):
        found.update(entry)
    return found


def blocks(body: Body, name: str) -> list[Body]:
    value = body.get(name, [])
    assert isinstance(value, list), f"{name} should be a block, got {value!r}"
    return value


def block(body: Body, name: str) -> Body:
    found = blocks(body, name)
    assert len(found) == 1, f"expected exactly one {name} block, found {len(found)}"
    return found[0]


def project_role_grants() -> list[tuple[str, str]]:
    """(member, role) for every google_project_iam_member, expanding `for_each = toset([...])`."""
    grants: list[tuple[str, str]] = []
    for name, body in resources("google_project_iam_member").items():
        if "for_each" in body:
            assert _ref(body["role"]) == "each.value", name
            roles = re.findall(r'"(roles/[^"]+)"', body["for_each"])
            assert roles, f"google_project_iam_member.{name}: cannot read roles from for_each"
        else:
            roles = [body["role"]]
        grants.extend((body["member"], role) for role in roles)
    return grants


def service_config() -> Body:
    return block(resource(FUNCTION), "service_config")


# --------------------------------------------------------------------------- scheduler


def test_scheduler_posts_to_function_uri_with_oidc_token_of_invoker_sa() -> None:
    jobs = resources("google_cloud_scheduler_job")
    assert len(jobs) == 1, f"expected one scheduler job, found {sorted(jobs)}"
    job = next(iter(jobs.values()))
    target = block(job, "http_target")

    assert target["http_method"] == "POST"
    assert _ref(target["uri"]) == f"{FUNCTION}.service_config[0].uri"
    assert target["headers"] == {"Content-Type": "application/json"}
    body = target["body"]
    assert "base64encode(jsonencode(" in body
    assert re.search(r"dry_run\W+false", body), f"scheduler must request a real run: {body}"

    assert "oauth_token" not in target, "Cloud Run needs an OIDC identity token, not OAuth"
    oidc = block(target, "oidc_token")
    assert _ref(oidc["service_account_email"]) == f"{INVOKER_SA}.email"
    assert _ref(oidc["audience"]) == f"{FUNCTION}.service_config[0].uri"


def test_scheduler_schedule_and_retries() -> None:
    job = next(iter(resources("google_cloud_scheduler_job").values()))
    assert _ref(job["schedule"]) == "var.schedule"
    assert _ref(job["time_zone"]) == "var.time_zone"
    assert variables()["schedule"]["default"] == "*/15 * * * *"
    assert variables()["time_zone"]["default"] == "Etc/UTC"

    retry = block(job, "retry_config")
    assert retry["retry_count"] == 3
    assert retry["min_backoff_duration"] == "30s"
    assert retry["max_backoff_duration"] == "300s"
    assert retry["max_doublings"] == 2


def test_scheduler_attempt_deadline_covers_function_timeout() -> None:
    job = next(iter(resources("google_cloud_scheduler_job").values()))
    deadline = re.fullmatch(r"\$\{local\.(\w+)\}s", job["attempt_deadline"])
    assert deadline, f"attempt_deadline should be derived from a local: {job['attempt_deadline']}"
    derived = locals_()[deadline.group(1)]
    margin = re.fullmatch(r"\$\{var\.function_timeout_seconds \+ (\d+)\}", derived)
    assert margin, f"deadline must be function timeout + margin, got {derived!r}"
    assert int(margin.group(1)) > 0

    assert _ref(service_config()["timeout_seconds"]) == "var.function_timeout_seconds"
    timeout = variables()["function_timeout_seconds"]["default"]
    assert timeout == 300
    # Cloud Scheduler accepts at most 1800 s for HTTP targets.
    assert timeout + int(margin.group(1)) <= 1800


# --------------------------------------------------------------------------- function


def test_function_build_config() -> None:
    build = block(resource(FUNCTION), "build_config")
    assert build["entry_point"] == "reconcile_http"
    assert _ref(build["runtime"]) == "var.function_runtime"
    assert variables()["function_runtime"]["default"] in {"python311", "python312"}
    assert _ref(build["service_account"]) == f"{BUILD_SA}.id"

    storage = block(block(build, "source"), "storage_source")
    assert _ref(storage["bucket"]) == "google_storage_bucket.function_source.name"
    assert _ref(storage["object"]) == "google_storage_bucket_object.function_source.name"


def test_function_runs_as_its_own_service_account() -> None:
    email = service_config()["service_account_email"]
    assert _ref(email) == f"{FUNCTION_SA}.email"
    assert "compute@developer.gserviceaccount.com" not in email

    accounts = {
        name: body["account_id"] for name, body in resources("google_service_account").items()
    }
    for address in (FUNCTION_SA, INVOKER_SA, BUILD_SA):
        assert address.split(".")[1] in accounts, f"missing {address}"
    assert len(set(accounts.values())) == len(accounts), "service accounts must be distinct"


def test_function_never_overlaps_and_is_sized() -> None:
    config = service_config()
    assert config["max_instance_count"] == 1
    assert config["min_instance_count"] == 0
    assert config["max_instance_request_concurrency"] == 1
    assert _ref(config["available_memory"]) == "var.function_memory"
    assert variables()["function_memory"]["default"] == "512M"
    assert config["all_traffic_on_latest_revision"] is True
    # ALLOW_ALL is only acceptable because invocation is IAM-only (see invoker tests).
    assert config["ingress_settings"] == "ALLOW_ALL"


def test_function_plain_environment() -> None:
    env = service_config()["environment_variables"]
    assert _ref(env["ENVIRONMENT"]) == "var.environment"
    assert _ref(env["GOOGLE_CLOUD_PROJECT"]) == "var.project_id"
    assert _ref(env["ALPACA_PAPER_TRADING"]) == "tostring(var.alpaca_paper_trading)"
    assert env["LOG_FORMAT"] == "json"
    assert variables()["environment"]["default"] == "PROD"
    assert variables()["alpaca_paper_trading"]["default"] is True
    assert not set(env) & set(SECRET_ENV), "secrets must not be plain environment variables"


def test_source_zip_upload_redeploys_on_change() -> None:
    bucket = resource("google_storage_bucket.function_source")
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert block(bucket, "versioning")["enabled"] is True

    obj = resource("google_storage_bucket_object.function_source")
    assert "${filemd5(var.source_zip)}" in obj["name"]
    assert _ref(obj["source"]) == "var.source_zip"
    assert _ref(obj["bucket"]) == "google_storage_bucket.function_source.name"
    assert variables()["source_zip"]["default"] == "../dist/function-source.zip"


# --------------------------------------------------------------------------- secrets


def test_each_secret_is_mounted_as_env_var() -> None:
    mounted = blocks(service_config(), "secret_environment_variables")
    by_key = {entry["key"]: entry for entry in mounted}
    assert len(by_key) == len(mounted), "duplicate secret env var keys"
    assert set(by_key) == set(SECRET_ENV)

    for env_name, secret_name in SECRET_ENV.items():
        entry = by_key[env_name]
        assert _ref(entry["secret"]) == f"google_secret_manager_secret.{secret_name}.secret_id"
        assert entry["version"] == "latest"
        assert _ref(entry["project_id"]) == "var.project_id"


def test_secrets_exist_without_values_in_terraform() -> None:
    secrets = resources("google_secret_manager_secret")
    assert set(secrets) == set(SECRET_ENV.values())
    for name, body in secrets.items():
        replication = block(body, "replication")
        assert "auto" in replication, f"{name} should use automatic replication"
    assert not resources("google_secret_manager_secret_version"), (
        "secret values must be added with gcloud, never through Terraform state"
    )


def test_secret_access_is_per_secret_for_function_sa_only() -> None:
    members = resources("google_secret_manager_secret_iam_member")
    granted = set()
    for name, body in members.items():
        assert body["role"] == "roles/secretmanager.secretAccessor", name
        assert body["member"] == f"serviceAccount:${{{FUNCTION_SA}.email}}", name
        granted.add(_ref(body["secret_id"]))
    expected = {f"google_secret_manager_secret.{name}.secret_id" for name in SECRET_ENV.values()}
    assert granted == expected
    assert len(members) == len(expected)

    project_roles = [role for _, role in project_role_grants()]
    assert not [role for role in project_roles if role.startswith("roles/secretmanager.")], (
        "secret access must not be granted project-wide"
    )


# --------------------------------------------------------------------------- IAM


def test_no_public_principals_anywhere() -> None:
    for path in _tf_files():
        text = path.read_text(encoding="utf-8").lower()
        for principal in ("allusers", "allauthenticatedusers"):
            assert principal not in text, f"{path.name} mentions {principal}"


def test_invoker_binding_is_the_invoker_sa_on_the_function_service() -> None:
    bindings = resources("google_cloud_run_service_iam_member")
    assert len(bindings) == 1, f"expected one Cloud Run IAM member, found {sorted(bindings)}"
    binding = next(iter(bindings.values()))
    assert binding["role"] == "roles/run.invoker"
    assert binding["member"] == f"serviceAccount:${{{INVOKER_SA}.email}}"
    assert _ref(binding["service"]) == f"{FUNCTION}.service_config[0].service"

    assert not resources("google_cloudfunctions2_function_iam_member")
    for member, role in project_role_grants():
        assert "invoker" not in role, f"project-wide {role} for {member}"


def test_function_sa_project_roles_are_least_privilege() -> None:
    function_member = f"serviceAccount:${{{FUNCTION_SA}.email}}"
    roles = {role for member, role in project_role_grants() if member == function_member}
    assert roles == {"roles/datastore.user", "roles/logging.logWriter"}


def test_every_iam_member_is_a_service_account_we_create() -> None:
    for rtype in (
        "google_project_iam_member",
        "google_secret_manager_secret_iam_member",
        "google_cloud_run_service_iam_member",
    ):
        for name, body in resources(rtype).items():
            assert re.fullmatch(
                r"serviceAccount:\$\{google_service_account\.\w+\.email\}", body["member"]
            ), f"{rtype}.{name} member {body['member']!r}"


# --------------------------------------------------------------------------- Firestore


def test_firestore_ttl_on_run_records() -> None:
    fields = resources("google_firestore_field")
    ttl = [body for body in fields.values() if "ttl_config" in body]
    assert len(ttl) == 1, "exactly one TTL policy (run records only)"
    field = ttl[0]
    assert field["collection"] == "reconciler_runs"
    assert field["field"] == "expire_at"
    assert "index_config" in field
    assert _ref(field["database"]) == "var.firestore_database"
    assert variables()["firestore_database"]["default"] == "(default)"


# --------------------------------------------------------------------------- variables


def test_every_variable_has_a_description() -> None:
    declared = variables()
    assert declared
    for name, body in declared.items():
        description = body.get("description", "")
        assert isinstance(description, str), f"variable {name}"
        assert description.strip(), f"variable {name} needs a description"


def test_expected_variables_and_outputs_exist() -> None:
    assert {
        "project_id",
        "region",
        "environment",
        "schedule",
        "time_zone",
        "alpaca_paper_trading",
        "function_name",
        "source_zip",
        "notification_channels",
        "firestore_database",
        "function_memory",
        "function_timeout_seconds",
    } <= set(variables())
    assert variables()["region"]["default"] == "europe-west1"
    assert variables()["function_name"]["default"] == "crypto-signals-reconciler"
    assert variables()["notification_channels"]["default"] == []

    outputs: Body = {}
    for entry in _top_level("output"):
        outputs.update(entry)
    assert {
        "function_uri",
        "function_service_account_email",
        "invoker_service_account_email",
        "scheduler_job_name",
        "secret_ids",
    } <= set(outputs)
    assert _ref(outputs["function_uri"]["value"]) == f"{FUNCTION}.service_config[0].uri"
    assert _ref(outputs["invoker_service_account_email"]["value"]) == f"{INVOKER_SA}.email"


def test_required_apis_enabled_and_kept_on_destroy() -> None:
    services = resources("google_project_service")
    assert len(services) == 1
    service = next(iter(services.values()))
    assert service["disable_on_destroy"] is False
    apis = set(re.findall(r'"([a-z]+\.googleapis\.com)"', locals_()["required_apis"]))
    assert {
        "cloudfunctions.googleapis.com",
        "run.googleapis.com",
        "cloudbuild.googleapis.com",
        "artifactregistry.googleapis.com",
        "cloudscheduler.googleapis.com",
        "secretmanager.googleapis.com",
        "firestore.googleapis.com",
        "logging.googleapis.com",
        "monitoring.googleapis.com",
    } <= apis


def test_provider_versions_pinned() -> None:
    settings = [entry for doc in _parsed() for entry in doc.get("terraform", [])]
    assert len(settings) == 1
    assert settings[0]["required_version"] == ">= 1.5"
    google = settings[0]["required_providers"][0]["google"]
    assert google["source"] == "hashicorp/google"
    # The 6.50 line: the schema tests/terraform/test_provider_schema.py checks against.
    assert google["version"] == "~> 6.50.0"
    assert "backend" not in settings[0]


# --------------------------------------------------------------------------- observability

METRIC_EVENTS = {
    "reconciler_heals": 'jsonPayload.event="position_healed"',
    "reconciler_orphans": 'jsonPayload.event="orphan_detected"',
    "reconciler_unverified_zombies": 'jsonPayload.event="unverified_zombie"',
    "reconciler_failed_runs": 'jsonPayload.event="run_finished"',
    "reconciler_successful_runs": 'jsonPayload.event="run_finished"',
}


def _metrics_by_name() -> dict[str, tuple[str, Body]]:
    return {
        body["name"]: (tf_name, body)
        for tf_name, body in resources("google_logging_metric").items()
    }


def test_function_log_filter_targets_the_function_service() -> None:
    base = _text(locals_()["function_log_filter"])
    assert '"resource.type="cloud_run_revision""' in base
    assert '"resource.labels.service_name="${var.function_name}""' in base
    assert base.startswith('${join(" AND ", [')


def test_log_based_metrics_exist_and_filter_the_right_events() -> None:
    metrics = _metrics_by_name()
    assert set(METRIC_EVENTS) <= set(metrics)
    for name, event_clause in METRIC_EVENTS.items():
        _, body = metrics[name]
        query = _text(body["filter"])
        assert query.startswith("${local.function_log_filter} AND "), name
        assert event_clause in query, f"{name}: {query}"
        assert body.get("description", "").strip(), f"{name} needs a description"
        descriptor = block(body, "metric_descriptor")
        assert descriptor["metric_kind"] == "DELTA"
        assert descriptor["value_type"] == "INT64"

    failed = _text(metrics["reconciler_failed_runs"][1]["filter"])
    assert 'jsonPayload.status="failed"' in failed
    assert 'status="ok"' not in failed
    success = _text(metrics["reconciler_successful_runs"][1]["filter"])
    assert 'jsonPayload.status="ok"' in success
    assert 'jsonPayload.status="issues"' in success
    assert "failed" not in success

    heals = metrics["reconciler_heals"][1]
    assert heals["label_extractors"]["symbol"] == "EXTRACT(jsonPayload.symbol)"
    labels = blocks(block(heals, "metric_descriptor"), "labels")
    assert [label["key"] for label in labels] == ["symbol"]


def _conditions_on(metric_tf_name: str) -> Iterator[tuple[Body, Body]]:
    metric_ref = f"${{google_logging_metric.{metric_tf_name}.name}}"
    for policy in resources("google_monitoring_alert_policy").values():
        for condition in blocks(policy, "conditions"):
            for kind in ("condition_threshold", "condition_absent"):
                for spec in blocks(condition, kind):
                    if metric_ref in spec["filter"]:
                        yield policy, {"kind": kind, **spec}


def test_alert_when_a_run_fails() -> None:
    failed_tf_name = _metrics_by_name()["reconciler_failed_runs"][0]
    found = [
        (policy, spec)
        for policy, spec in _conditions_on(failed_tf_name)
        if spec["kind"] == "condition_threshold"
    ]
    assert len(found) == 1, "one threshold alert on reconciler_failed_runs"
    policy, spec = found[0]
    _assert_user_metric_filter(spec["filter"], failed_tf_name)
    assert spec["comparison"] == "COMPARISON_GT"
    assert spec["threshold_value"] == 0
    aggregation = block(spec, "aggregations")
    assert aggregation["alignment_period"] == "60s"
    assert aggregation["per_series_aligner"] == "ALIGN_DELTA"
    assert aggregation["cross_series_reducer"] == "REDUCE_SUM"
    _assert_alert_basics(policy)


def test_alert_when_no_successful_run_for_an_hour() -> None:
    success_tf_name = _metrics_by_name()["reconciler_successful_runs"][0]
    found = [
        (policy, spec)
        for policy, spec in _conditions_on(success_tf_name)
        if spec["kind"] == "condition_absent"
    ]
    assert len(found) == 1, "one absence alert on reconciler_successful_runs"
    policy, spec = found[0]
    _assert_user_metric_filter(spec["filter"], success_tf_name)
    assert spec["duration"] == "3600s"
    # Summing across series: per-revision / per-status series would raise false
    # absences after each deploy or while runs keep ending with status=issues.
    assert block(spec, "aggregations")["cross_series_reducer"] == "REDUCE_SUM"
    _assert_alert_basics(policy)


def _assert_user_metric_filter(query: str, metric_tf_name: str) -> None:
    assert locals_()["log_metric_prefix"] == "logging.googleapis.com/user"
    assert _text(query) == (
        f'metric.type="${{local.log_metric_prefix}}/${{google_logging_metric.{metric_tf_name}.name}}"'
        ' AND resource.type="cloud_run_revision"'
    )


def _assert_alert_basics(policy: Body) -> None:
    assert _ref(policy["notification_channels"]) == "var.notification_channels"
    documentation = block(policy, "documentation")
    assert documentation["mime_type"] == "text/markdown"
    content = documentation["content"]
    assert "${local.runbook}" in content
    runbook = locals_()["runbook"]
    for needle in ("run_id", "crypto-signals reconcile --dry-run", "Firestore"):
        assert needle in runbook, f"runbook should mention {needle}"


# --------------------------------------------------------------------------- formatting


def test_terraform_fmt_check() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.fail(
            "terraform binary not found on PATH; install Terraform >= 1.5 "
            "(https://developer.hashicorp.com/terraform/install, e.g. "
            "`apt-get install terraform` from the HashiCorp apt repository) and re-run."
        )
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(TF_DIR)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "CHECKPOINT_DISABLE": "1"},
    )
    assert result.returncode == 0, (
        f"terraform fmt -check failed; run `terraform fmt -recursive terraform/`\n"
        f"{result.stdout}\n{result.stderr}"
    )
