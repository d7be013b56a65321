"""The ``faceops`` command line: parses arguments and calls the core; no ML logic lives here.

Exit codes (also in ``faceops --help``):

====  =====================================================================================
0     success
1     any other FaceOps error (missing weights, bad gallery, bad config, ...)
2     usage error (bad options or arguments)
3     bad input: at least one input is not a usable image (folder runs list them at the end)
4     no face detected where one was needed (verify), or in at least one input (detect, recognize)
====  =====================================================================================
"""

from __future__ import annotations

import click

from faceops.cli._common import EXIT_CODES_HELP, FaceOpsGroup
from faceops.cli.data import data
from faceops.cli.face import detect, enroll, recognize, verify
from faceops.cli.identities import identities
from faceops.cli.model import evaluate, model, preprocess, train
from faceops.cli.monitor import monitor
from faceops.cli.optimize import optimize
from faceops.cli.pipeline import pipeline
from faceops.cli.serve import serve, watch

__all__ = ["cli", "main"]


@click.group(cls=FaceOpsGroup, help=f"FaceOps: face detection, verification and identification.\n\n{EXIT_CODES_HELP}")
@click.version_option(package_name="faceops")
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
def cli(verbose: bool) -> None:
    import logging

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


for _command in (detect, enroll, recognize, verify):
    cli.add_command(_command)
cli.add_command(data)
cli.add_command(serve)
cli.add_command(watch)
cli.add_command(monitor)
cli.add_command(pipeline)
cli.add_command(identities)
for _command in (preprocess, train, evaluate, model, optimize):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (exits with the documented exit code)."""
    cli.main(args=argv, prog_name="faceops")
