"""Component ``data-version``: import a source or restore a data version, push it, and name it."""

from typing import NamedTuple

from faceops.kfp.components.image import IMAGE
from kfp import dsl
from kfp.dsl import Dataset, Output


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def data_version(
    repo: str,
    source: str,
    version: str,
    identities_file: str,
    min_images: int,
    remote: str,
    dataset: Output[Dataset],
) -> NamedTuple("DataVersion", [("data_dir", str), ("md5", str), ("rev", str), ("info", dict)]):  # type: ignore[valid-type]  # kfp's idiom
    """Make the wanted data version current in ``repo``; outputs its folder, DVC md5 (cache key) and rev."""
    import json
    import shutil
    from collections import namedtuple
    from pathlib import Path

    from faceops.kfp.components._io import folder

    from faceops.data.versioning import pointer_path
    from faceops.steps.data import prepare_data

    info = prepare_data(repo, source, version, identities_file, min_images, remote=remote)
    out = folder(dataset)
    pointer = pointer_path(repo)
    shutil.copyfile(pointer, out / pointer.name)
    shutil.copyfile(Path(info["data_dir"]) / "manifest.csv", out / "manifest.csv")
    (out / "version.json").write_text(json.dumps(info, indent=2))
    dataset.metadata.update({k: info[k] for k in ("rev", "md5", "images", "identities")})
    DataVersion = namedtuple("DataVersion", ["data_dir", "md5", "rev", "info"])
    return DataVersion(info["data_dir"], info["md5"], info["rev"], info)
