"""The scoring job: engines (Spark and arrow) behind one protocol, the batch transaction
(accounting, publish, undo, sweep) with no engine branches, and the read API over the views.
"""
