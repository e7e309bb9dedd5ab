"""The built-in Kubernetes plugin (``kubernetes``, aliases ``k8s``, ``k8s-plugin``).

``settings`` parses ``plugin.k8s.conf.yaml``; ``manifests`` renders every
object purely; ``rollout`` judges live objects purely; ``cluster`` is the thin
layer of Kubernetes API calls; ``plugin`` sequences them into the actions.
"""
