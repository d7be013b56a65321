"""The robustness step of the pipelines: the trained bundle through the robustness suite, as a plain function.

Composes :mod:`faceops.evaluation.robustness` without changing it; the KFP component
(``components/robustness.py``) only hands it folders and writes its metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from faceops.steps.data import train_config

__all__ = ["robustness_step"]


def robustness_step(
    model_dir: str | Path,
    data_dir: str | Path,
    run_config: dict[str, Any] | None,
    out_dir: str | Path,
    conditions: list[str] | None = None,
    pairs: str = "",
    folds: list[int] | None = None,
    seed: int = 0,
    max_pairs: int = 3000,
) -> dict[str, float]:
    """Run the suite on the bundle in ``model_dir`` and write ``robustness.json``, ``robustness.png``,
    ``table.json`` and ``report.html`` to ``out_dir``.

    Args:
        conditions: condition names (all when empty).
        pairs: a pairs file (LFW ``pairs.txt`` or CSV, images beside it); empty: the run config's
            ``lfw_pairs``, else the data version's held-out identities.
        folds: LFW folds of ``pairs`` (all when empty).
        max_pairs: at most this many held-out pairs (half genuine) when no pairs file is used.

    Returns:
        TAR at the target FAR and FRR at the threshold, clean and per condition (``<name>_tar_at_far``,
        ``<name>_frr``), for the Metrics artifact.
    """
    from faceops.errors import DataValidationFailed
    from faceops.evaluation.bundle import ModelBundle
    from faceops.evaluation.robustness import attributes_beside, plot_robustness, run_robustness, suite_pairs
    from faceops.reports.page import write_page

    config = train_config(run_config, data_dir, out_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bundle = ModelBundle.load(Path(model_dir) / "bundle")
    if pairs:
        pairs_file: Path | None = Path(pairs)
    else:
        pairs_file = config.lfw_pairs.pairs if config.lfw_pairs else None
        folds = folds or (config.lfw_pairs.folds if config.lfw_pairs else None)
    try:
        chosen, root = suite_pairs(pairs_file, folds or None, Path(data_dir), seed, max_pairs)
    except DataValidationFailed as exc:  # too little held-out data to judge: said, not a failed run
        (out / "robustness.json").write_text(json.dumps({"status": "insufficient", "reason": str(exc)}, indent=2))
        write_page(out / "report.html", "Robustness", {"Not run": {"reason": str(exc)}}, [])
        return {}
    report = run_robustness(
        bundle.recognizer(),
        chosen,
        bundle.threshold,
        config.evaluation.target_far,
        conditions or None,
        seed=seed,
        attributes=attributes_beside(root),
        attribute_root=root,
    )
    (out / "robustness.json").write_text(json.dumps(report.to_dict(), indent=2))
    table = report.table()
    (out / "table.json").write_text(json.dumps(table, indent=2))
    plot = plot_robustness(report, out / "robustness.png")
    metrics: dict[str, float] = {}
    for name, m in {"clean": report.clean, **report.conditions}.items():
        for key in ("tar_at_far", "frr"):
            if m.get(key) is not None:
                metrics[f"{name}_{key}"] = float(m[key])
    rows = [{c: table[c][i] for c in table} for i in range(len(table["name"]))]
    write_page(out / "report.html", "Robustness", {"Metrics": metrics, "Conditions, slices and groups": rows}, [plot])
    return metrics
