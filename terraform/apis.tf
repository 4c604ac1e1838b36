locals {
  required_apis = toset([
    "artifactregistry.googleapis.com", # gen2 function images (gcf-artifacts repository)
    "cloudbuild.googleapis.com",       # builds the function from the source zip
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com", # service accounts; needed for a custom build service account
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "run.googleapis.com", # gen2 functions run as Cloud Run services
    "secretmanager.googleapis.com",
  ])
}

resource "google_project_service" "required" {
  for_each = local.required_apis

  project = var.project_id
  service = each.value

  # Other workloads in the project (the trading bot itself) use these APIs too;
  # destroying the reconciler must never switch them off.
  disable_on_destroy = false
}
