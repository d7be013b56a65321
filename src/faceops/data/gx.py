"""The Great Expectations 1.x adapter: run a list of :class:`Check` on a pandas frame, build HTML data docs.

Only this module imports ``great_expectations``, so its API churn stays here. An ephemeral context is used (no
``gx/`` project folder to keep in the repository); the data docs site is written to the folder the caller
names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["Check", "CheckResult", "run_checks"]

# Our check kinds -> GX expectation class names (column-map expectations: they list the offending rows).
_KINDS = {
    "in_set": "ExpectColumnValuesToBeInSet",
    "between": "ExpectColumnValuesToBeBetween",
    "regex": "ExpectColumnValuesToMatchRegex",
    "not_null": "ExpectColumnValuesToNotBeNull",
}


@dataclass(frozen=True)
class Check:
    """One expectation on one column.

    Attributes:
        name: short id (``readable``, ``format``, ...).
        description: what it checks, in words (shown in summaries and data docs).
        kind: ``in_set``, ``between``, ``regex`` or ``not_null``.
        column: the frame column.
        kwargs: the expectation's arguments (``value_set``, ``min_value``, ``max_value``, ``regex``,
        ``mostly``).
    """

    name: str
    description: str
    kind: str
    column: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class CheckResult:
    """The outcome of one :class:`Check`."""

    name: str
    description: str
    success: bool
    unexpected_count: int
    unexpected_percent: float | None
    examples: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _context(docs_dir: Path | None) -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    for site in list(context.list_data_docs_sites()):
        context.delete_data_docs_site(site)
    if docs_dir is not None:
        context.add_data_docs_site(
            "faceops",
            {
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir.resolve()),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    return context


def run_checks(
    frame: pd.DataFrame,
    checks: list[Check],
    suite_name: str,
    key_column: str = "path",
    docs_dir: Path | None = None,
    max_examples: int = 10,
) -> tuple[list[CheckResult], dict[str, Any]]:
    """Validate ``frame`` against ``checks``.

    Args:
        frame: one row per item.
        checks: the expectations.
        suite_name: the expectation suite's name (shown in the data docs).
        key_column: the column that names offending rows in the results (e.g. the image path).
        docs_dir: where to build the HTML data docs (``index.html``); None: no docs.
        max_examples: offending rows listed per check.

    Returns:
        The per-check results, in the order of ``checks``, and GX's validation result as JSON.
    """
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.checkpoint.actions import ValidationAction

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = _context(docs_dir)
    asset = context.data_sources.add_pandas("faceops").add_dataframe_asset(suite_name)
    batch = asset.add_batch_definition_whole_dataframe("all")
    suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
    for check in checks:
        cls = getattr(gxe, _KINDS[check.kind])
        suite.add_expectation(
            cls(column=check.column, **check.kwargs, meta={"check": check.name, "notes": check.description})
        )
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=suite_name, data=batch, suite=suite)
    )
    actions: list[ValidationAction] = [gx.checkpoint.UpdateDataDocsAction(name="data_docs")] if docs_dir is not None else []
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=suite_name,
            validation_definitions=[definition],
            actions=actions,
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [key_column]},
        )
    )
    run = checkpoint.run(batch_parameters={"dataframe": frame})
    validation = next(iter(run.run_results.values()))
    by_name = {r.expectation_config.meta["check"]: r for r in validation.results}
    results = []
    for check in checks:
        raw = by_name[check.name]
        result = raw.result or {}
        rows = result.get("unexpected_index_list") or []
        examples = [
            {key_column: r.get(key_column), "value": _plain(r.get(check.column))} for r in rows[:max_examples]
        ]
        if raw.exception_info and raw.exception_info.get("raised_exception"):
            examples = [{"error": raw.exception_info.get("exception_message")}]
        results.append(
            CheckResult(
                check.name,
                check.description,
                bool(raw.success),
                int(result.get("unexpected_count") or 0),
                _plain(result.get("unexpected_percent")),
                examples,
            )
        )
    return results, validation.to_json_dict()


def _plain(value: Any) -> Any:
    """numpy scalars -> Python, so results serialise to JSON."""
    return value.item() if hasattr(value, "item") else value
