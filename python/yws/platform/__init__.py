"""Where YWS runs: one :class:`Target` per platform (the embedded default on this machine,
a Databricks workspace), which builds the storage, the warehouse, the Spark session and the
MLflow URIs the jobs use, and names the default scoring engine. Nothing above this package asks
which target it is on.
"""
