output "function_name" {
  description = "Name of the gen2 function (and of its Cloud Run service)."
  value       = google_cloudfunctions2_function.reconciler.name
}

output "function_uri" {
  description = "HTTPS URL of the function. Requires an identity token of a principal with roles/run.invoker."
  value       = google_cloudfunctions2_function.reconciler.service_config[0].uri
}

output "function_service_account_email" {
  description = "Runtime service account of the function."
  value       = google_service_account.function.email
}

output "invoker_service_account_email" {
  description = "Service account Cloud Scheduler uses to sign its OIDC token."
  value       = google_service_account.invoker.email
}

output "build_service_account_email" {
  description = "Service account Cloud Build uses to build the function image."
  value       = google_service_account.build.email
}

output "scheduler_job_name" {
  description = "Cloud Scheduler job that triggers the reconciler (gcloud scheduler jobs run <name> --location <region>)."
  value       = google_cloud_scheduler_job.reconcile.name
}

output "secret_ids" {
  description = "Secret Manager secret ids by the environment variable they feed. Add values with `gcloud secrets versions add <id> --data-file=-`."
  value = {
    ALPACA_API_KEY      = google_secret_manager_secret.alpaca_api_key.secret_id
    ALPACA_SECRET_KEY   = google_secret_manager_secret.alpaca_secret_key.secret_id
    DISCORD_WEBHOOK_URL = google_secret_manager_secret.discord_webhook_url.secret_id
  }
}

output "source_bucket" {
  description = "Bucket holding the uploaded function source zips."
  value       = google_storage_bucket.function_source.name
}

output "alert_policy_ids" {
  description = "Cloud Monitoring alert policies created for the reconciler."
  value = {
    run_failed         = google_monitoring_alert_policy.run_failed.name
    reconciliation_lag = google_monitoring_alert_policy.reconciliation_lag.name
    unverified_zombies = google_monitoring_alert_policy.unverified_zombies.name
  }
}
