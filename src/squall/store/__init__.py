"""The storage kit every service's store shares: opening an embedded SQLite database (``sqlite_conn``), the data
directory at rest and a full disk (``disk``), env-var encryption at rest (``env_crypto``) and group commit of
blocking writes (``group_commit``).  Each service keeps its own state under its package (``functions/store``,
``s3/store``, ``sqs/store``, ``triggers/<kind>/store``)."""
