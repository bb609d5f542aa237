"""How YWS runs as Databricks jobs: the Asset Bundle (load, validate, variables), the wheel's
task entry points, and a Jobs API client.
"""
