terraform {
  # 1.5+ for `import` blocks and stable validation/precondition semantics.
  required_version = ">= 1.5"

  required_providers {
    google = {
      source = "hashicorp/google"
      # Pinned to the 6.50 line: tests/terraform/test_provider_schema.py checks
      # every resource against the schema of hashicorp/google 6.50.0 (extracted by
      # scripts/extract_provider_schema.py), which has `replication { auto {} }` on
      # secrets, `build_config.service_account` on gen2 functions and `severity` on
      # alert policies. Move this pin only together with that schema file.
      version = "~> 6.50.0"
    }
  }

  # No backend block on purpose: state holds no secret values (secret *versions*
  # are never managed here), and each team picks its own remote state bucket with
  #   terraform init -backend-config=...   (see README.md).
}

# Credentials come from the environment (ADC: `gcloud auth application-default login`
# or a CI workload identity) and never from this configuration.
provider "google" {
  project = var.project_id
  region  = var.region
}
