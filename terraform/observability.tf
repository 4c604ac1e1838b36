# The application logs one JSON object per line to stdout. Cloud Logging parses
# it into jsonPayload and maps `severity`/`message` onto the entry; every line
# also carries `run_id` and an `event` discriminator, which the metrics below use.

locals {
  # All log entries of the function's Cloud Run service (any revision).
  function_log_filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=\"${var.function_name}\"", # gen2: Cloud Run service name == function name
  ])

  log_metric_prefix = "logging.googleapis.com/user"

  runbook = <<-EOT
    ## Runbook: crypto-signals reconciler (${var.function_name}, project ${var.project_id})

    1. **Find the run.** Open Logs Explorer with
       `resource.type="cloud_run_revision" AND resource.labels.service_name="${var.function_name}" AND jsonPayload.event="run_finished"`
       and take the `jsonPayload.run_id` of the failing run, then filter on
       `jsonPayload.run_id="<run id>"` to read every line of that run (ERROR lines first).
       CLI: `gcloud logging read 'resource.labels.service_name="${var.function_name}" AND jsonPayload.run_id="<run id>"' --project ${var.project_id} --freshness=2h`
    2. **Check the dependencies.** A 503 / status=failed means broker or Firestore
       state could not be read: check the Alpaca status page and API keys
       (secrets reconciler-alpaca-api-key / reconciler-alpaca-secret-key), and
       Firestore availability/quota in project ${var.project_id}.
    3. **Check the trigger.** `gcloud scheduler jobs describe ${var.function_name}-trigger --location ${var.region} --project ${var.project_id}`
       shows the last attempt status; a 401/403 points at the invoker binding,
       DEADLINE_EXCEEDED at the function timeout.
    4. **Reproduce locally without side effects:** with read access to the project,
       `GOOGLE_CLOUD_PROJECT=${var.project_id} ENVIRONMENT=${var.environment} crypto-signals reconcile --dry-run`
       (export ALPACA_API_KEY / ALPACA_SECRET_KEY from
       `gcloud secrets versions access latest --secret=<secret id>` first).
       `--dry-run` reports what a run would do without healing anything.
    5. **Re-run** once fixed: `gcloud scheduler jobs run ${var.function_name}-trigger --location ${var.region} --project ${var.project_id}`.
  EOT
}

# --- log-based metrics ----------------------------------------------------------------

resource "google_logging_metric" "heals" {
  project     = var.project_id
  name        = "reconciler_heals"
  description = "Positions healed by the reconciler (Firestore state corrected to match the broker). One log line per heal."
  filter      = "${local.function_log_filter} AND jsonPayload.event=\"position_healed\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "Reconciler heals"

    labels {
      key         = "symbol"
      value_type  = "STRING"
      description = "Symbol of the healed position."
    }
  }

  label_extractors = {
    "symbol" = "EXTRACT(jsonPayload.symbol)"
  }
}

resource "google_logging_metric" "orphans" {
  project     = var.project_id
  name        = "reconciler_orphans"
  description = "Orphans detected by the reconciler: positions open at the broker with no matching Firestore position. One log line per orphan symbol."
  filter      = "${local.function_log_filter} AND jsonPayload.event=\"orphan_detected\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "Reconciler orphans"

    labels {
      key         = "symbol"
      value_type  = "STRING"
      description = "Symbol of the orphaned broker position."
    }
  }

  label_extractors = {
    "symbol" = "EXTRACT(jsonPayload.symbol)"
  }
}

resource "google_logging_metric" "unverified_zombies" {
  project     = var.project_id
  name        = "reconciler_unverified_zombies"
  description = "Zombie positions (open in Firestore, absent at the broker) that the reconciler could not verify and therefore did not heal. One log line per position."
  filter      = "${local.function_log_filter} AND jsonPayload.event=\"unverified_zombie\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "Reconciler unverified zombies"

    labels {
      key         = "symbol"
      value_type  = "STRING"
      description = "Symbol of the unverified position."
    }
  }

  label_extractors = {
    "symbol" = "EXTRACT(jsonPayload.symbol)"
  }
}

resource "google_logging_metric" "failed_runs" {
  project     = var.project_id
  name        = "reconciler_failed_runs"
  description = "Reconciler runs that finished with status=failed (broker or Firestore state could not be read, or the run crashed)."
  filter      = "${local.function_log_filter} AND jsonPayload.event=\"run_finished\" AND jsonPayload.status=\"failed\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "Reconciler failed runs"
  }
}

resource "google_logging_metric" "successful_runs" {
  project     = var.project_id
  name        = "reconciler_successful_runs"
  description = "Reconciler runs that completed (status=ok, or status=issues: completed but found something to report). Feeds the reconciliation-lag SLO alert."
  filter      = "${local.function_log_filter} AND jsonPayload.event=\"run_finished\" AND (jsonPayload.status=\"ok\" OR jsonPayload.status=\"issues\")"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "Reconciler successful runs"

    labels {
      key         = "status"
      value_type  = "STRING"
      description = "Final run status: ok or issues."
    }
  }

  label_extractors = {
    "status" = "EXTRACT(jsonPayload.status)"
  }
}

# --- alert policies ---------------------------------------------------------------------
# Filters reference google_logging_metric.*.name, which also orders creation:
# an alert policy on a user metric that does not exist yet is rejected.
# Every condition sums across all series (REDUCE_SUM without group_by): each
# Cloud Run revision and each label value is its own time series, and per-series
# evaluation would e.g. flag the previous revision as "absent" after a deploy.

resource "google_monitoring_alert_policy" "run_failed" {
  project               = var.project_id
  display_name          = "reconciler run failed (${var.function_name})"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels
  user_labels           = local.common_labels

  conditions {
    display_name = "reconciler_failed_runs > 0 in 60s"

    condition_threshold {
      filter          = "metric.type=\"${local.log_metric_prefix}/${google_logging_metric.failed_runs.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    # Log-based counters only have points when a run fails; close the incident
    # once no further failure has been seen for 30 minutes.
    auto_close = "1800s"
  }

  documentation {
    subject   = "Reconciler run failed in ${var.project_id}"
    mime_type = "text/markdown"
    content   = <<-EOT
      A reconciler run finished with `status=failed`: broker positions or Firestore
      state could not be read (the function answered 503 and Cloud Scheduler
      retries it), or the run crashed. Until a run succeeds, drift between the
      broker and Firestore is neither detected nor healed.

      ${local.runbook}
    EOT
  }
}

resource "google_monitoring_alert_policy" "reconciliation_lag" {
  project               = var.project_id
  display_name          = "reconciliation lag SLO: no successful run in 1 hour (${var.function_name})"
  combiner              = "OR"
  severity              = "CRITICAL"
  notification_channels = var.notification_channels
  user_labels           = local.common_labels

  conditions {
    display_name = "no reconciler_successful_runs for 3600s"

    condition_absent {
      filter   = "metric.type=\"${local.log_metric_prefix}/${google_logging_metric.successful_runs.name}\" AND resource.type=\"cloud_run_revision\""
      duration = "3600s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  documentation {
    subject   = "No successful reconciler run for 1 hour in ${var.project_id}"
    mime_type = "text/markdown"
    content   = <<-EOT
      Reconciliation lag SLO breached: no run finished with status ok/issues in the
      last hour (4 scheduled runs at the default */15 cadence). Either every run
      failed, the scheduler job is paused/failing (401/403/DEADLINE_EXCEEDED), or
      the function cannot start (bad deploy, missing secret version).

      ${local.runbook}
    EOT
  }
}

resource "google_monitoring_alert_policy" "unverified_zombies" {
  project               = var.project_id
  display_name          = "reconciler found unverified zombie positions (${var.function_name})"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.notification_channels
  user_labels           = local.common_labels

  conditions {
    display_name = "reconciler_unverified_zombies > 0"

    condition_threshold {
      filter          = "metric.type=\"${local.log_metric_prefix}/${google_logging_metric.unverified_zombies.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "3600s"
  }

  documentation {
    subject   = "Unverified zombie positions in ${var.project_id}"
    mime_type = "text/markdown"
    content   = <<-EOT
      The reconciler found positions that are open in Firestore but absent at the
      broker and could not verify why, so it did not heal them. They need a human
      decision: look up `jsonPayload.event="unverified_zombie"` lines
      (`jsonPayload.symbol` names each position) and compare with the Alpaca
      order/fill history before closing them manually.

      ${local.runbook}
    EOT
  }
}
