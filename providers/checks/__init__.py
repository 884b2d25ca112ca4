"""After a rollback, whatever the platform: the runbook's "run smoke tests, monitor error rates".

- ``smoke``: the environment's health URLs (2xx within a timeout, optional expected text)
  and the team's smoke command.
- ``error_rate``: one reading of the error rate, from a Prometheus instant query or a
  JSON endpoint, compared with the threshold.
- ``steps``: the step ``checks.post_rollback`` the core appends to every rollback plan
  when ``[environments.NAME.checks]`` configures something.
- ``watch``: the durable timer ``checks.error_watch`` that takes a reading every few
  minutes for the watch period and escalates a breach through the outbox.
"""
