# Three identities, each with only what it needs:
#   runtime  - what the function runs as (Firestore, its three secrets, logs)
#   invoker  - what Cloud Scheduler signs its OIDC token as (run.invoker on this
#              one service, nothing else)
#   build    - what Cloud Build uses to turn the source zip into an image, so the
#              build never runs as the (often over-privileged) default compute SA

resource "google_service_account" "function" {
  project      = var.project_id
  account_id   = "reconciler-runtime"
  display_name = "crypto-signals reconciler (function runtime)"
  description  = "Runtime identity of ${var.function_name}: Firestore user, accessor of its own three secrets, log writer."

  depends_on = [google_project_service.required]
}

resource "google_service_account" "invoker" {
  project      = var.project_id
  account_id   = "reconciler-invoker"
  display_name = "crypto-signals reconciler (scheduler invoker)"
  description  = "Identity Cloud Scheduler uses to mint the OIDC token that calls ${var.function_name}. Holds roles/run.invoker on that one service only."

  depends_on = [google_project_service.required]
}

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "reconciler-build"
  display_name = "crypto-signals reconciler (Cloud Build)"
  description  = "Cloud Build identity that builds the ${var.function_name} image from the source zip."

  depends_on = [google_project_service.required]
}

# --- runtime SA: project-level roles -------------------------------------------
# roles/datastore.user: read/write documents (positions, reconciler_runs, ...).
#   Firestore IAM has no per-collection grants, so project level is the narrowest.
# roles/logging.logWriter: lets the app use the Cloud Logging API if it ever
#   writes entries directly (stdout JSON is collected without it).
# Secret access is granted per secret in secrets.tf, never project-wide.
resource "google_project_iam_member" "function_roles" {
  for_each = toset([
    "roles/datastore.user",
    "roles/logging.logWriter",
  ])

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.function.email}"
}

# --- build SA -------------------------------------------------------------------
# roles/run.builder ("Can build Cloud Run functions and source deployed
# services") is the purpose-built minimum: read the staged source object, push
# and pull the image in Artifact Registry, write build logs. It replaces the
# default compute SA, which on older projects still carries roles/editor.
resource "google_project_iam_member" "build_builder" {
  project = var.project_id
  role    = "roles/run.builder"
  member  = "serviceAccount:${google_service_account.build.email}"
}

# --- invoker SA -------------------------------------------------------------------
# Only the invoker SA may call the function. The binding is on the gen2 function's
# underlying Cloud Run service, never on the project and never to a public
# (all-users / all-authenticated-users) principal.
resource "google_cloud_run_service_iam_member" "scheduler_invoker" {
  project  = var.project_id
  location = google_cloudfunctions2_function.reconciler.location
  service  = google_cloudfunctions2_function.reconciler.service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.invoker.email}"
}
