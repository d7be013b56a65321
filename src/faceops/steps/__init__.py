"""The bodies of the pipeline steps as plain functions: each Kubeflow component (faceops.kfp.components) calls one."""
