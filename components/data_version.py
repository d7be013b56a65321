"""Component ``data-version``: import a source or restore a data version, push it to the DVC remote, name it."""

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
) -> NamedTuple("DataVersion", [("data", dict), ("md5", str), ("rev", str), ("info", dict)]):  # type: ignore[valid-type]  # kfp's idiom
    """Make the wanted data version and push it to the DVC remote.

    ``data`` is the reference every later step fetches the files by (``{pointer, remote}``: the ``data.dvc``
    text and the remote's URL); a value, not an artifact, so the steps after it are reused from kfp's cache when
    the data did not change. ``dataset`` holds the same (``data.dvc``, ``manifest.csv``, ``version.json``) for
    the UI and lineage.
    """
    from collections import namedtuple

    from faceops.kfp.components._io import folder

    from faceops.steps.context import DataRef, data_version_step

    info = data_version_step(repo, source, version, identities_file, min_images, remote, folder(dataset))
    dataset.metadata.update({k: info[k] for k in ("rev", "md5", "images", "identities", "remote_url")})
    DataVersion = namedtuple("DataVersion", ["data", "md5", "rev", "info"])
    return DataVersion(DataRef.from_artifact(dataset.path).to_dict(), info["md5"], info["rev"], info)
