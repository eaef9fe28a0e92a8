"""The RDF semantic registry of models, artifacts, devices and deployments.

Not implemented yet (next issue); it will read artifact manifests through ``edgebert.artifact``.
"""
