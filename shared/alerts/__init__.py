"""Alerts (issue 17): what the app tells an operator, signed, when a destination needs them: a batch failed, it was
paused, its SAS token expires within 7 days or has expired, it recovered.

The state changes that cause an alert raise it into the outbox in control storage (`shared.control.alerts_outbox`,
best effort, after they are committed); the timer raises again what a crash lost (`conditions`: from failed
markers, records and activity, and the SAS expiries and automatic pauses no export sees), then delivers them
(`delivery`: each target's URL checked as destination endpoints are, the body signed as Standard Webhooks do
(`signing`), retried with backoff, outcomes saved on the alert), all in `sweep`. An export never waits for one.
`payload` turns an alert into its JSON body, with the `text` Slack and Teams show.

May import: destinations, control, secrets, and the base modules. The composition root (shared.services) only
for typing.
"""
