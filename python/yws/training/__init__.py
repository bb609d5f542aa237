"""The training job: read and check the labelled rows, split, fit, evaluate on the held-out
rows, log and register the model, and promote it through the validation gate.
"""
