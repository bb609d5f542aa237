"""Data in: the synthetic feature generator (demos and tests) and the import of a customer's
file into the features table.
"""
