"""The API's fast path to the features of :mod:`fraud_core.features`, claim records in, no
pandas or DuckDB per request.

* :mod:`~fraud_core.online.plan`: the feature declaration read as the kernels' tables;
* :mod:`~fraud_core.online.history`: the claims history indexed by policyholder and provider;
* :mod:`~fraud_core.online.kernels`: the compiled kernels that compute the features.

:class:`fraud_core.scoring.ClaimScorer` puts them together with the model.
"""
