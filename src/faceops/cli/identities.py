"""``faceops identities delete``: erase a person from gallery files, a stopped service's state and future data.

The running service erases through ``DELETE /v1/identities/{id}``; this command is for what it does not hold: the
gallery files ``faceops enroll`` writes, the state folder of a service that is stopped (its files: the gallery of
every model, the enrolment photos, the SQLite request log, with the same audit record as the service's), and the
deny list future data imports read (``--purge-data``). The monitor's embedding cache forgets the erased requests
at its next run (their request ids are gone from the log).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from faceops.cli._common import echo_json, json_option
from faceops.errors import UnknownIdentity
from faceops.face.config import DEFAULT_THRESHOLD
from faceops.face.gallery import Gallery

__all__ = ["identities"]

_STATE_GALLERIES = ("gallery.npz", "gallery-rebuild.npz")  # the service's embedded store (serving/store.py)


@click.group()
def identities() -> None:
    """Erase identities (the running service: DELETE /v1/identities/{id})."""


@identities.command()
@click.argument("name")
@click.option("--gallery", "galleries", type=click.Path(dir_okay=False, path_type=Path), multiple=True,
              help="A gallery file (.npz) to remove NAME from (repeat for several).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A stopped service's state folder: its galleries, enrolment photos and request log.")
@click.option("--purge-data", is_flag=True,
              help="Also list NAME in the deny list, so no future data version contains it.")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="The data repository whose deny list --purge-data writes.")
@json_option
def delete(name: str, galleries: tuple[Path, ...], state_dir: Path | None, purge_data: bool, data_root: Path,
           as_json: bool) -> None:
    """Erase NAME: its embeddings, enrolment photos, request-log rows that name or show it, with an audit record.

    NAME unknown to every gallery and state folder given is an error that changes nothing.
    """
    from faceops.telemetry.erasure import DeletionRecord, likeness_of, local_actor

    if not galleries and state_dir is None and not purge_data:
        raise click.UsageError("nothing to delete from: give --gallery FILE, --state-dir DIR and/or --purge-data")
    files = [*galleries, *([state_dir / f for f in _STATE_GALLERIES] if state_dir else [])]
    loaded = {path: Gallery.load(path) for path in files if path in galleries or path.exists()}
    photos = state_dir / "enrolled" / name if state_dir else None
    held = [path for path, g in loaded.items() if name in g.identities]
    if (galleries or state_dir) and not held and not (photos and photos.is_dir()):
        where = ", ".join(str(p) for p in [*galleries, *([state_dir] if state_dir else [])])
        raise UnknownIdentity(f"identity {name!r} is not enrolled in {where}")
    removed: dict[str, int] = {"gallery_embeddings": 0, "photos": 0}
    log = None
    if state_dir is not None and (state_dir / "requests.sqlite").exists():
        from faceops.telemetry.requestlog import RequestLog

        log = RequestLog(state_dir / "requests.sqlite")
        served = loaded.get(state_dir / "gallery.npz")
        likeness = None
        if served is not None and name in served.identities:
            likeness = likeness_of(served, name, _threshold(log, served.model_id))
        removed |= {f"log_{k}": n for k, n in log.forget(name, likeness).items()}
    for path in held:
        gallery = loaded[path]
        removed["gallery_embeddings"] += gallery.remove(name)
        gallery.save(path)
    if photos is not None and photos.is_dir():
        import shutil

        removed["photos"] = sum(p.is_file() for p in photos.iterdir())
        shutil.rmtree(photos)
    if purge_data:
        from faceops.data.denylist import DenyList

        removed["deny_listed"] = int(DenyList(data_root).add(name))
    record = DeletionRecord.new(name, local_actor(), removed)
    audit = _audit(record, log, galleries, data_root)
    summary: dict[str, Any] = {"identity": name, "removed": removed, "audit": audit}
    if as_json:
        echo_json(summary)
    else:
        what = ", ".join(f"{k} {v}" for k, v in removed.items())
        click.echo(f"erased {name!r}: {what}; audit record in {audit}")


def _threshold(log: Any, model_id: str) -> float:
    """The threshold the service last logged for ``model_id`` (the default if the log has none)."""
    rows = log.query(
        "SELECT threshold FROM requests WHERE model_id = ? AND threshold IS NOT NULL ORDER BY ts DESC LIMIT 1",
        (model_id,),
    )
    return float(rows[0][0]) if rows else DEFAULT_THRESHOLD


def _audit(record: Any, log: Any, galleries: tuple[Path, ...], data_root: Path) -> str:
    """Append the audit record: to the state folder's request log, else ``deletions.jsonl`` beside the first
    gallery (or in the data root); where it went."""
    if log is not None:
        log.record_deletion(record)
        log.close()
        return f"{log.path} (table deletions)"
    path = (galleries[0].parent if galleries else data_root) / "deletions.jsonl"
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(record.to_dict(), sort_keys=True) + "\n")
    return str(path)
