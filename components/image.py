"""The image the components run in on a cluster (``infra/Dockerfile``); override with ``--image``."""

# 'python' in the name also tells kfp.local's SubprocessRunner that the image is a Python one.
IMAGE = "ghcr.io/faceops/faceops-python:0.1.0"
