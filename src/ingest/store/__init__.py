"""SQL for each table, as plain functions over a psycopg connection. Callers own the transaction."""
