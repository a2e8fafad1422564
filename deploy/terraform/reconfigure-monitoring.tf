# CloudWatch Logs metric filters and alarms for the reconfigure daemon in the mail tiers.
#
# The daemon writes one JSON object per line to stdout; the ECS awslogs driver puts each line
# in the tier's log group as one event. Every line has `logger` ("reconfigure"), `tier`,
# `level`, `event` and `timestamp`; "cycle done" / "cycle failed" also carry `trigger`,
# `rows`, `skipped`, `changed`, `reloads`, `duration_ms` (and "cycle failed" an `error`).
# The filters count those events per tier; the alarms notify when a tier's cycles fail or
# stop. Operator steps for each alarm: docs/runbook.md (the anchor is in the description).
#
# Drop this file into the module that owns the tiers' log groups (or any module with the
# AWS provider configured); it declares no provider requirements of its own. The defaults
# are the log group names the ECS module creates (/ecs/cabal-<tier>).
#
# Metrics land in var.reconfigure_metric_namespace with one dimension, Tier:
#   CyclesDone             1 per "cycle done"
#   CyclesFailed           1 per "cycle failed"
#   HeartbeatPingFailures  1 per "heartbeat ping failed" (Healthchecks unreachable or refusing)
#   SkippedRows            the `skipped` count of each "cycle done" (rows left out by a rule)
# With several tasks in a tier (smtp-in, smtp-out scale out) the tier's metrics add up over
# its tasks: the "silent" alarm fires only when no task of the tier completes a cycle.

variable "reconfigure_log_groups" {
  description = "CloudWatch log group of each mail tier's containers, by tier."
  type        = map(string)
  default = {
    "imap"     = "/ecs/cabal-imap"
    "smtp-in"  = "/ecs/cabal-smtp-in"
    "smtp-out" = "/ecs/cabal-smtp-out"
  }
}

variable "reconfigure_metric_namespace" {
  description = "CloudWatch namespace for the metrics the log filters publish."
  type        = string
  default     = "Cabal/Reconfigure"
}

variable "reconfigure_alarm_actions" {
  description = "ARNs (e.g. an SNS topic) notified when a reconfigure alarm fires and clears."
  type        = list(string)
  default     = []
}

variable "reconfigure_alarms_enabled" {
  description = "Whether the alarms notify; false while the mail tiers are quiesced (no task, no cycles)."
  type        = bool
  default     = true
}

variable "reconfigure_silent_hours" {
  description = "Hours without a single \"cycle done\" in a tier before its silent alarm fires."
  type        = number
  default     = 2
}

locals {
  # Metric name => the event it counts and the value each matching line adds.
  reconfigure_log_metrics = {
    CyclesDone            = { event = "cycle done", value = "1" }
    CyclesFailed          = { event = "cycle failed", value = "1" }
    HeartbeatPingFailures = { event = "heartbeat ping failed", value = "1" }
    SkippedRows           = { event = "cycle done", value = "$.skipped" }
  }

  # One filter per tier and metric, keyed "<tier>/<metric>".
  reconfigure_log_filters = {
    for pair in setproduct(keys(var.reconfigure_log_groups), keys(local.reconfigure_log_metrics)) :
    "${pair[0]}/${pair[1]}" => merge(local.reconfigure_log_metrics[pair[1]], {
      tier   = pair[0]
      metric = pair[1]
    })
  }
}

resource "aws_cloudwatch_log_metric_filter" "reconfigure" {
  for_each = local.reconfigure_log_filters

  name           = "reconfigure-${each.value.tier}-${each.value.metric}"
  log_group_name = var.reconfigure_log_groups[each.value.tier]
  pattern        = "{ $.logger = \"reconfigure\" && $.tier = \"${each.value.tier}\" && $.event = \"${each.value.event}\" }"

  metric_transformation {
    name      = each.value.metric
    namespace = var.reconfigure_metric_namespace
    value     = each.value.value
    unit      = "Count"
    # A dimension rules out default_value: a tier with no matching line has no data points,
    # which the alarms below treat explicitly.
    dimensions = {
      Tier = "$.tier"
    }
  }
}

# Cycles fail and none succeeds within 30 minutes (a failure that the next cycle mends, such
# as a short AWS outage, does not alarm).
resource "aws_cloudwatch_metric_alarm" "reconfigure_cycles_failing" {
  for_each = var.reconfigure_log_groups

  alarm_name          = "reconfigure-${each.key}-cycles-failing"
  alarm_description   = "reconfigure on ${each.key}: cycles failed and none succeeded in 30 min. Runbook: docs/runbook.md#cycles-failing"
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  actions_enabled     = var.reconfigure_alarms_enabled
  alarm_actions       = var.reconfigure_alarm_actions
  ok_actions          = var.reconfigure_alarm_actions

  metric_query {
    id          = "failing"
    expression  = "IF(FILL(failed, 0) > 0 AND FILL(done, 0) == 0, 1, 0)"
    label       = "failed cycles without a success"
    return_data = true
  }

  metric_query {
    id = "failed"
    metric {
      namespace   = var.reconfigure_metric_namespace
      metric_name = "CyclesFailed"
      dimensions  = { Tier = each.key }
      period      = 1800
      stat        = "Sum"
    }
  }

  metric_query {
    id = "done"
    metric {
      namespace   = var.reconfigure_metric_namespace
      metric_name = "CyclesDone"
      dimensions  = { Tier = each.key }
      period      = 1800
      stat        = "Sum"
    }
  }

  depends_on = [aws_cloudwatch_log_metric_filter.reconfigure]
}

# No "cycle done" at all for reconfigure_silent_hours: the daemon is stopped, stuck, or
# failing every cycle. Missing data (nothing logged) counts as breaching.
resource "aws_cloudwatch_metric_alarm" "reconfigure_silent" {
  for_each = var.reconfigure_log_groups

  alarm_name          = "reconfigure-${each.key}-silent"
  alarm_description   = "reconfigure on ${each.key}: no successful cycle logged in ${var.reconfigure_silent_hours} h. Runbook: docs/runbook.md#stale-last-success"
  namespace           = var.reconfigure_metric_namespace
  metric_name         = "CyclesDone"
  dimensions          = { Tier = each.key }
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = var.reconfigure_silent_hours
  datapoints_to_alarm = var.reconfigure_silent_hours
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  actions_enabled     = var.reconfigure_alarms_enabled
  alarm_actions       = var.reconfigure_alarm_actions
  ok_actions          = var.reconfigure_alarm_actions

  depends_on = [aws_cloudwatch_log_metric_filter.reconfigure]
}
