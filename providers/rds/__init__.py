"""AWS RDS and Aurora: point-in-time restore through the RDS API (boto3).

RDS always restores into a NEW instance (``<source-id>-restored-<YYYYMMDD-HHMMSS>``) or, for
Aurora, a new cluster plus a writer instance; the source is never modified and is the
incident's safety copy. The method is three steps: ``rds.pitr`` (restore and wait),
``deploy.repoint`` (the app's DATABASE_URL to the new endpoint, with the source's
credentials: ``RdsPlans.connection_url``) and ``rds.verify`` (the usual verify, there).

Modules: ``config`` (the ``[environments.NAME.rds]`` section), ``client`` (the API calls, each
failure one line), ``window`` (the restore window), ``choice`` (a time or "latest", never
both), ``settings`` (what the copy gets: copied or overridden), ``waiting`` (poll until
available), ``pitr`` / ``aurora`` (the restore step), ``leftovers`` (after a crash),
``restored`` (the declared target), ``verify``, ``plans``.

Reaching a restored instance: RDS instances usually live in private subnets. When rollbot
cannot reach the new endpoint directly, set ``connect_host`` / ``connect_port`` to where a
bastion or port-forward (SSM, ``kubectl port-forward``) makes it reachable; rollbot's own
connections (the verify, reading the restored migrations head) go there, while the app is
always pointed at the real endpoint. The tests use the same setting to let a local
PostgreSQL play the restored instance, since moto's endpoints are made-up hostnames.
"""
