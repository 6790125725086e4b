"""The SQL store: schema, migrations, and the durable order journal."""
