"""The contract every part of YWS honours, written once: the spec (features, label, bands),
the quarantine rules as data, the schema checks, and the tables' columns as the DDL in ``sql/``
declares them. It imports nothing of YWS but the floor (errors, config).
"""
