"""Given to the sandbox app through MIGRATION_MODULES by one test: a real, unapplied migration."""
