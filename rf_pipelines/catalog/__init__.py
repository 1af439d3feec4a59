"""The catalog database: schema migrations and the only code that writes SQL."""
