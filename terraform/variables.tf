variable "project_id" {
  description = "GCP project id that hosts the reconciler (function, scheduler, secrets, Firestore, metrics). One reconciler deployment per project: metric and service account names are fixed."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a GCP project id: 6-30 chars, lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Region for the function, its source bucket and the Cloud Scheduler job (Cloud Scheduler must be available in that region)."
  type        = string
  default     = "europe-west1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must look like a GCP region, e.g. europe-west1."
  }
}

variable "environment" {
  description = "Value of the ENVIRONMENT variable the application reads (e.g. PROD). Also used, lowercased, as a resource label."
  type        = string
  default     = "PROD"

  validation {
    condition     = can(regex("^[A-Z][A-Z0-9_]{0,31}$", var.environment))
    error_message = "environment must be an upper-case identifier such as PROD or STAGING."
  }
}

variable "alpaca_paper_trading" {
  description = "Value of ALPACA_PAPER_TRADING for the function. true = Alpaca paper account; false = LIVE account with real money, only set it deliberately."
  type        = bool
  default     = true
}

variable "function_name" {
  description = "Name of the Cloud Functions gen2 function; it is also the name of the underlying Cloud Run service that the log-based metrics filter on. Max 28 chars so that the source bucket name \"<project_id>-<function_name>-src\" stays within 63 chars."
  type        = string
  default     = "crypto-signals-reconciler"

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,26}[a-z0-9])?$", var.function_name))
    error_message = "function_name must be 1-28 chars of lowercase letters, digits and hyphens, start with a letter and not end with a hyphen."
  }
}

variable "function_runtime" {
  description = "Python runtime of the function. Keep it equal to the Python version CI tests with (pyproject targets 3.11)."
  type        = string
  default     = "python311"

  validation {
    condition     = contains(["python311", "python312"], var.function_runtime)
    error_message = "function_runtime must be python311 or python312."
  }
}

variable "function_memory" {
  description = "Memory of the function instance (service_config.available_memory). 512M covers alpaca-py + Firestore gRPC + pydantic at ~150-250 MB RSS with 10k positions, with headroom."
  type        = string
  default     = "512M"

  validation {
    condition     = can(regex("^[0-9]+(M|Mi|G|Gi)$", var.function_memory))
    error_message = "function_memory must be a size like 512M, 1Gi or 2G."
  }
}

variable "function_timeout_seconds" {
  description = "Function execution timeout in seconds. The Cloud Scheduler attempt deadline is derived from it (timeout + 20 s), so it must stay <= 1780 (the scheduler's HTTP deadline limit is 1800 s)."
  type        = number
  default     = 300

  validation {
    condition     = var.function_timeout_seconds >= 60 && var.function_timeout_seconds <= 1780 && floor(var.function_timeout_seconds) == var.function_timeout_seconds
    error_message = "function_timeout_seconds must be a whole number between 60 and 1780."
  }
}

variable "source_zip" {
  description = "Path to the function source zip built by `python scripts/package_function.py` (relative paths resolve from the directory terraform runs in). Its md5 is part of the object name, so a new zip redeploys the function."
  type        = string
  default     = "../dist/function-source.zip"

  validation {
    condition     = endswith(var.source_zip, ".zip")
    error_message = "source_zip must point to a .zip file."
  }
}

variable "schedule" {
  description = "Cron expression (5 fields, unix-cron) on which Cloud Scheduler triggers a reconciliation run."
  type        = string
  default     = "*/15 * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.schedule))) == 5
    error_message = "schedule must be a 5-field unix-cron expression, e.g. \"*/15 * * * *\"."
  }
}

variable "time_zone" {
  description = "tz database time zone in which the schedule is interpreted."
  type        = string
  default     = "Etc/UTC"

  validation {
    condition     = length(trimspace(var.time_zone)) > 0
    error_message = "time_zone must be a tz database name such as Etc/UTC or Europe/Berlin."
  }
}

variable "firestore_database" {
  description = "Firestore database id that holds the reconciler collections (the TTL policy on reconciler_runs.expire_at is created there)."
  type        = string
  default     = "(default)"

  validation {
    condition     = var.firestore_database == "(default)" || can(regex("^[a-z][a-z0-9-]{2,62}$", var.firestore_database))
    error_message = "firestore_database must be \"(default)\" or a valid Firestore database id."
  }
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channel ids (projects/<p>/notificationChannels/<id>) that receive the reconciler alerts. Empty = incidents are only visible in the console."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", c))])
    error_message = "Each notification channel must be a full id: projects/<project>/notificationChannels/<id>."
  }
}
