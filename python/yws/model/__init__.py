"""The model: the SparkML pipeline, the NumPy evaluator of a saved pipeline (the arrow engine's
model and each registered version's pyfunc code), how a version is logged, and the registry
(aliases, versions) in MLflow.
"""
