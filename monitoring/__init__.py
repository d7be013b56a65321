"""Production monitoring: drift and accuracy/FAR of the served model, alerts, and the retraining trigger.

One monitor run (:func:`monitoring.monitor.run_once`, ``faceops monitor run``) reads a window of the service's
request log (:mod:`monitoring.window`), compares it with the champion's reference
(:mod:`monitoring.reference`)
through Evidently (:mod:`monitoring.drift`) and the feedback statistics of :mod:`faceops.monitoring_stats`,
decides by the policy (:mod:`monitoring.policy`, state and cooldown in :mod:`monitoring.state`), alerts
(:mod:`monitoring.alerts`) and may start the retraining pipeline (:mod:`monitoring.trigger`).

Nothing is imported here: Evidently, MLflow and kfp load only when a run needs them.
"""
