"""For a class or a team: the shared MLflow server, its accounts, and the secrets both read."""
