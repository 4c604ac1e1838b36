locals {
  common_labels = {
    app         = "crypto-signals"
    component   = "reconciler"
    environment = lower(var.environment)
    managed-by  = "terraform"
  }

  # Scheduler waits a little longer than the function may run, so an attempt is
  # never abandoned (and retried) while the first invocation is still working.
  scheduler_attempt_deadline_seconds = var.function_timeout_seconds + 20
}

# --- source upload ------------------------------------------------------------------

resource "google_storage_bucket" "function_source" {
  #checkov:skip=CKV_GCP_62:Holds only the function build zip uploaded by terraform apply (no user data; public access prevention enforced, uniform IAM). Admin Activity audit logs record writes; a separate usage-log bucket would itself need an access-log target.
  project  = var.project_id
  name     = "${var.project_id}-${var.function_name}-src"
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  # Every zip has its own md5-named object; replaced ones become noncurrent
  # versions. Keep them a month for rollback/forensics, then delete.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  labels = local.common_labels

  depends_on = [google_project_service.required]
}

resource "google_storage_bucket_object" "function_source" {
  # The md5 in the name makes a new zip a new object, which changes
  # build_config.source and therefore redeploys the function.
  name         = "function-source-${filemd5(var.source_zip)}.zip"
  bucket       = google_storage_bucket.function_source.name
  source       = var.source_zip
  content_type = "application/zip"
}

# --- the function -------------------------------------------------------------------

resource "google_cloudfunctions2_function" "reconciler" {
  #checkov:skip=CKV_GCP_124:Cloud Scheduler calls the public run.app URL and is not "internal" traffic for Cloud Run ingress, so ALLOW_INTERNAL_ONLY would block every run; invocation is IAM-authenticated (roles/run.invoker only for the dedicated invoker SA, never public), see the ingress comment below.
  project     = var.project_id
  name        = var.function_name
  location    = var.region
  description = "State reconciler between the Alpaca broker and the crypto-signals Firestore positions (HTTP, triggered by Cloud Scheduler)."
  labels      = local.common_labels

  build_config {
    runtime         = var.function_runtime
    entry_point     = "reconcile_http"
    service_account = google_service_account.build.id

    source {
      storage_source {
        bucket = google_storage_bucket.function_source.name
        object = google_storage_bucket_object.function_source.name
      }
    }
  }

  service_config {
    # Runs must never overlap in the cloud: at most one instance, and that
    # instance takes one request at a time. A scheduler tick (or retry) that
    # arrives while a run is in progress is rejected with 429 and retried by
    # Cloud Scheduler. Cloud Run documents that max instances can briefly be
    # exceeded during surges, so this is a strong guard, not a distributed lock.
    max_instance_count               = 1
    min_instance_count               = 0 # a run every 15 min does not justify paying for an idle instance
    max_instance_request_concurrency = 1

    # 512M: alpaca-py + Firestore gRPC client + pydantic models measure
    # ~150-250 MB RSS when reconciling 10k positions; 512M leaves ~2x headroom
    # for response buffers and GC without stepping up to the 1G price tier.
    available_memory = var.function_memory

    # 300 s: a normal run takes seconds. Every broker call times out after 10 s
    # with bounded retries, so even a slow broker/Firestore cannot push a run
    # near this limit. The Cloud Scheduler attempt deadline is derived from it
    # (timeout + 20 s) so the scheduler never gives up on a run still in progress.
    timeout_seconds = var.function_timeout_seconds

    # Ingress: Cloud Scheduler calls the public *.run.app URL, and Scheduler
    # traffic is NOT "internal" for Cloud Run ingress, so ALLOW_INTERNAL_ONLY
    # would block every scheduled run. ALLOW_ALL is safe here because invocation
    # is IAM-authenticated: only the invoker SA holds roles/run.invoker (iam.tf)
    # and nothing grants it to the public (all-users principals); unauthenticated
    # requests are rejected with 403 before reaching the code.
    ingress_settings               = "ALLOW_ALL"
    all_traffic_on_latest_revision = true

    service_account_email = google_service_account.function.email

    environment_variables = {
      ENVIRONMENT          = var.environment
      GOOGLE_CLOUD_PROJECT = var.project_id
      ALPACA_PAPER_TRADING = tostring(var.alpaca_paper_trading)
      LOG_FORMAT           = "json"
    }

    secret_environment_variables {
      key        = "ALPACA_API_KEY"
      project_id = var.project_id
      secret     = google_secret_manager_secret.alpaca_api_key.secret_id
      version    = "latest"
    }

    secret_environment_variables {
      key        = "ALPACA_SECRET_KEY"
      project_id = var.project_id
      secret     = google_secret_manager_secret.alpaca_secret_key.secret_id
      version    = "latest"
    }

    secret_environment_variables {
      key        = "DISCORD_WEBHOOK_URL"
      project_id = var.project_id
      secret     = google_secret_manager_secret.discord_webhook_url.secret_id
      version    = "latest"
    }
  }

  depends_on = [
    google_project_service.required,
    # The first revision resolves the secrets at start-up: grants must exist first.
    google_secret_manager_secret_iam_member.function_alpaca_api_key,
    google_secret_manager_secret_iam_member.function_alpaca_secret_key,
    google_secret_manager_secret_iam_member.function_discord_webhook_url,
    google_project_iam_member.function_roles,
    google_project_iam_member.build_builder,
  ]
}
