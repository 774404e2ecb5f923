"""Inference backends behind one interface (``InferenceBackend``) and the choice between them."""

from .base import BackendError, InferenceBackend, ModelSpec

__all__ = ["BackendError", "InferenceBackend", "ModelSpec"]
