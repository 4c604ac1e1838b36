resource "google_cloud_scheduler_job" "reconcile" {
  project     = var.project_id
  region      = var.region
  name        = "${var.function_name}-trigger"
  description = "Triggers a reconciliation run of ${var.function_name} (POST {\"dry_run\": false})."
  schedule    = var.schedule
  time_zone   = var.time_zone

  # Must be >= the function timeout: if the scheduler gave up first it would
  # record a failure and retry while the original run is still executing.
  attempt_deadline = "${local.scheduler_attempt_deadline_seconds}s"

  # The function answers 503 when broker or Firestore state could not be read
  # (and 429 if a previous run still occupies the single instance); both are
  # retried here: 30 s, 60 s, 120 s backoff, then the next scheduled tick.
  retry_config {
    retry_count          = 3
    min_backoff_duration = "30s"
    max_backoff_duration = "300s"
    max_doublings        = 2
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.reconciler.service_config[0].uri
    body        = base64encode(jsonencode({ dry_run = false }))
    headers = {
      "Content-Type" = "application/json"
    }

    # OIDC identity token signed for the dedicated invoker SA; Cloud Run checks
    # it against roles/run.invoker. Audience = the service URL.
    oidc_token {
      service_account_email = google_service_account.invoker.email
      audience              = google_cloudfunctions2_function.reconciler.service_config[0].uri
    }
  }

  depends_on = [
    google_project_service.required,
    # Without the binding the first ticks would be rejected with 403.
    google_cloud_run_service_iam_member.scheduler_invoker,
  ]
}
