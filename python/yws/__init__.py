"""YWS — the Yellow Warning System: SparkML train and score jobs on Unity Catalog."""

__version__ = "0.1.0"
