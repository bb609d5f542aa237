"""The embedded default's REST server: ``yws serve`` (Jobs API and SQL Statement Execution API)."""
