"""Kubeflow adapters, installed from the top-level folders: components/ as faceops.kfp.components and
pipelines/ as faceops.kfp.pipelines."""
