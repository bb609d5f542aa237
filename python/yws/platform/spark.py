"""The Spark session: the job's own on Databricks, a small local one on the embedded default."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from yws.config import Settings

# Confs we set on the local session only. Serverless refuses most Spark confs, so the
# Databricks target takes the session as it comes (UTC and ANSI are its defaults).
LOCAL_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.ansi.enabled": "true",
    "spark.driver.memory": "4g",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}


def get_spark(settings: Settings) -> SparkSession:
    from pyspark.sql import SparkSession

    if settings.target == "databricks":
        return SparkSession.builder.getOrCreate()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.master(os.environ.get("YWS_SPARK_MASTER", "local[*]"))
    builder = builder.appName("yws")
    for key, value in LOCAL_CONF.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
