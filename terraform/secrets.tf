# Secret *containers* only. Values are added out of band with
#   gcloud secrets versions add <secret_id> --data-file=-
# (see README.md) so they never reach Terraform state, plans or CI logs.
# The function mounts version "latest" of each as an environment variable.

resource "google_secret_manager_secret" "alpaca_api_key" {
  project   = var.project_id
  secret_id = "reconciler-alpaca-api-key"

  labels = local.common_labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.required]
}

resource "google_secret_manager_secret" "alpaca_secret_key" {
  project   = var.project_id
  secret_id = "reconciler-alpaca-secret-key"

  labels = local.common_labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.required]
}

resource "google_secret_manager_secret" "discord_webhook_url" {
  project   = var.project_id
  secret_id = "reconciler-discord-webhook-url"

  labels = local.common_labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.required]
}

# secretAccessor on exactly these three secrets for the runtime SA - not a
# project-wide grant, so the function cannot read any other secret in the project.
resource "google_secret_manager_secret_iam_member" "function_alpaca_api_key" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.alpaca_api_key.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function.email}"
}

resource "google_secret_manager_secret_iam_member" "function_alpaca_secret_key" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.alpaca_secret_key.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function.email}"
}

resource "google_secret_manager_secret_iam_member" "function_discord_webhook_url" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.discord_webhook_url.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function.email}"
}
