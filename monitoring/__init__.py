"""Production monitoring: drift and accuracy/FAR of the served model, alerts, and the retraining trigger.

One monitor run (:func:`faceops.monitoring.monitor.run_once`, ``faceops monitor run``) reads a window of the service's
request log (:mod:`faceops.monitoring.window`), compares it with the champion's reference
(:mod:`faceops.monitoring.reference`)
through Evidently (:mod:`faceops.monitoring.drift`) and the feedback statistics of :mod:`faceops.telemetry.stats`,
decides by the policy (:mod:`faceops.monitoring.policy`, state and cooldown in :mod:`faceops.monitoring.state`), alerts
(:mod:`faceops.monitoring.alerts`) and may start the retraining pipeline (:mod:`faceops.monitoring.trigger`).

Nothing is imported here: Evidently, MLflow and kfp load only when a run needs them.
"""
