"""Drift monitoring: how far a scored batch strays from the rows the model was validated on.

* :mod:`yws.monitoring.profile`: the bins a batch is counted in (:class:`Plan`) and the counts
  (:class:`Profile`); each scoring engine counts with the helpers there (NumPy for the arrow
  engine, one Spark aggregation for the Spark engine), so both put a value in the same bin;
* :mod:`yws.monitoring.baseline`: the training baseline, computed from the held-out rows and
  saved in the model folder, so it travels with the model version;
* :mod:`yws.monitoring.drift`: the one implementation of the math — PSI, null and unseen-level
  rates, the status thresholds — turning a profile and a baseline into the drift table's rows.
"""
