# TTL policy: Firestore deletes a reconciler_runs document (in any collection with
# that id - it is a collection group) once its `expire_at` timestamp has passed.
# The app sets expire_at when it writes a run record. Only run records expire;
# alerts and positions are kept.
resource "google_firestore_field" "reconciler_runs_ttl" {
  project    = var.project_id
  database   = var.firestore_database
  collection = "reconciler_runs"
  field      = "expire_at"

  ttl_config {}

  # Empty index_config exempts expire_at from single-field indexing: it is never
  # queried, and a monotonically increasing indexed timestamp is a write hotspot.
  index_config {}

  depends_on = [google_project_service.required]
}
